// A stand-in for the one type of NuGet Microsoft.Graph.Communications.Calls.Media the Windows media engine uses:
// AudioSendBuffer, the library's concrete AudioMediaBuffer for sending (AudioMediaBuffer is abstract with a protected
// abstract Dispose(bool), which a pythonnet class cannot override). Written from its API reference
// (microsoftgraph/microsoft-graph-comms-samples, docs/calls_media/Microsoft.Graph.Communications.Calls.Media.AudioSendBuffer.html):
// public AudioSendBuffer(IntPtr data, long length, AudioFormat audioFormat, long timeStamp = 0L), Dispose(bool) overridden.
// Like Microsoft's original sample class of the same name and summary ("Creates an Audio Buffer for Send and also
// implements Dispose"), its Dispose frees the frame data with Marshal.FreeHGlobal: the sender allocates it with
// Marshal.AllocHGlobal and never frees it itself. That the SDK's class does the same is for a Windows VM to confirm.
//
// Compiled by tests/test_windows_engine.py: mcs -target:library -r:Microsoft.Skype.Bots.Media.dll
//   -out:Microsoft.Graph.Communications.Calls.Media.dll Microsoft.Graph.Communications.Calls.Media.cs

namespace Microsoft.Graph.Communications.Calls.Media
{
    using System;
    using System.Runtime.InteropServices;
    using System.Threading;
    using Microsoft.Skype.Bots.Media;

    public class AudioSendBuffer : AudioMediaBuffer
    {
        private int disposed;

        public AudioSendBuffer(IntPtr data, long length, AudioFormat audioFormat, long timeStamp = 0L)
        {
            this.Data = data;
            this.Length = length;
            this.AudioFormat = audioFormat;
            this.Timestamp = timeStamp;
            Interlocked.Increment(ref StandInSends.created);
        }

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref this.disposed, 1) == 0)
            {
                Marshal.FreeHGlobal(this.Data);
                Interlocked.Increment(ref StandInSends.freed);
            }
        }
    }

    // The test side: send buffers created, and how many of them freed their unmanaged data.
    public static class StandInSends
    {
        internal static long created;
        internal static long freed;

        public static long Created
        {
            get { return Interlocked.Read(ref created); }
        }

        public static long Freed
        {
            get { return Interlocked.Read(ref freed); }
        }
    }
}
