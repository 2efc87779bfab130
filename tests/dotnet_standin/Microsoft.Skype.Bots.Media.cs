// A stand-in for the part of Microsoft's real-time media library (NuGet Microsoft.Skype.Bots.Media) that the Windows
// media engine (mediavm/windows/) uses, so that the engine's interop code really runs on Linux: pythonnet on Mono loads
// this assembly, the engine initialises the "platform", creates sockets, subscribes to their events, copies buffers out of
// unmanaged memory and disposes them, sends buffers and shuts down, all against these types.
//
// Written from the library's public API reference (microsoftgraph/microsoft-graph-comms-samples, docs/bot_media/
// Microsoft.Skype.Bots.Media.*.html, https://microsoftgraph.github.io/microsoft-graph-comms-samples/docs/bot_media/):
// the same namespace, type names, member names, member types and event signatures, and only the members the engine uses.
// Enum values are not documented; the engine uses names only. Nothing here is Microsoft's code.
//
// The namespace StandIn (at the end) is the tests' side: it records what the engine did (settings, sockets, disposals,
// unmanaged allocations still live, buffers sent) and raises the library's events on its own System.Threading.Thread, as
// the real library raises them on its threads, timing every call into the engine's handler.
//
// Compiled by tests/test_windows_engine.py: mcs -target:library -r:System.dll -r:Newtonsoft.Json.dll
//   -out:Microsoft.Skype.Bots.Media.dll Microsoft.Skype.Bots.Media.cs

namespace Microsoft.Skype.Bots.Media
{
    using System;
    using System.Net;
    using System.Runtime.InteropServices;
    using System.Threading;
    using Newtonsoft.Json.Linq;

    public enum AudioFormat
    {
        Pcm16K,
        Pcm44KStereo,
    }

    public enum StreamDirection
    {
        Inactive,
        Recvonly,
        Sendonly,
        Sendrecv,
    }

    public enum MediaSendStatus
    {
        Inactive,
        Active,
    }

    public enum MediaPlatformHealthStatus
    {
        Normal,
        HeavilyLoaded,
        Overloaded,
    }

    public class SkypeMediaException : Exception
    {
        public SkypeMediaException(string message)
            : base(message)
        {
        }
    }

    public class MediaPlatformInstanceSettings
    {
        public string CertificateThumbprint { get; set; }

        public int InstanceInternalPort { get; set; }

        public IPAddress InstancePublicIPAddress { get; set; }

        public int InstancePublicPort { get; set; }

        public string ServiceFqdn { get; set; }
    }

    public class MediaPlatformSettings
    {
        public string ApplicationId { get; set; }

        public MediaPlatformInstanceSettings MediaPlatformInstanceSettings { get; set; }
    }

    public class MediaPlatformHealthChangedEventArgs : EventArgs
    {
        public MediaPlatformHealthStatus CurrentHealth { get; set; }

        public MediaPlatformHealthStatus PreviousHealth { get; set; }
    }

    public static class MediaPlatform
    {
        private static readonly long Epoch = DateTime.UtcNow.Ticks - System.Diagnostics.Stopwatch.GetTimestamp();

        public static MediaPlatformHealthStatus CurrentHealth
        {
            get { return StandIn.Platform.Health; }
        }

        public static event EventHandler<MediaPlatformHealthChangedEventArgs> MediaPlatformHealthChanged;

        public static void Initialize(MediaPlatformSettings settings)
        {
            StandIn.Platform.Check(settings);
            StandIn.Platform.Initialized(settings);
        }

        public static void Shutdown()
        {
            StandIn.Platform.ShutDown();
        }

        public static JObject CreateMediaConfiguration(IAudioSocket audioSocket)
        {
            return StandIn.Platform.Configuration(audioSocket);
        }

        public static long GetCurrentTimestamp()
        {
            // 100 ns units, as documented (Stopwatch ticks are not necessarily 100 ns: scale them).
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            return Epoch + (long)(now * (10000000.0 / System.Diagnostics.Stopwatch.Frequency));
        }

        internal static void RaiseHealthChanged(MediaPlatformHealthChangedEventArgs args)
        {
            EventHandler<MediaPlatformHealthChangedEventArgs> handler = MediaPlatformHealthChanged;
            if (handler != null)
            {
                handler(null, args);
            }
        }

        internal static int HealthHandlers()
        {
            EventHandler<MediaPlatformHealthChangedEventArgs> handler = MediaPlatformHealthChanged;
            return handler == null ? 0 : handler.GetInvocationList().Length;
        }
    }

    public struct UnmixedAudioBuffer
    {
        internal UnmixedAudioBuffer(IntPtr data, long length, uint activeSpeakerId, long originalSenderTimestamp)
        {
            this.Data = data;
            this.Length = length;
            this.ActiveSpeakerId = activeSpeakerId;
            this.OriginalSenderTimestamp = originalSenderTimestamp;
        }

        public uint ActiveSpeakerId { get; }

        public IntPtr Data { get; }

        public long Length { get; }

        public long OriginalSenderTimestamp { get; }
    }

    public abstract class AudioMediaBuffer : IDisposable
    {
        protected AudioMediaBuffer()
        {
        }

        public uint[] ActiveSpeakers { get; protected set; }

        public AudioFormat AudioFormat { get; protected set; }

        public IntPtr Data { get; protected set; }

        public bool IsSilence { get; protected set; }

        public long Length { get; protected set; }

        public long Timestamp { get; protected set; }

        public UnmixedAudioBuffer[] UnmixedAudioBuffers { get; protected set; }

        public void Dispose()
        {
            this.Dispose(true);
            GC.SuppressFinalize(this);
        }

        protected abstract void Dispose(bool disposing);
    }

    public class AudioMediaReceivedEventArgs : EventArgs
    {
        public AudioMediaBuffer Buffer { get; set; }
    }

    public class AudioSendStatusChangedEventArgs : EventArgs
    {
        public MediaSendStatus MediaSendStatus { get; set; }
    }

    public class MediaStreamFailureEventArgs : EventArgs
    {
    }

    public class DominantSpeakerChangedEventArgs : EventArgs
    {
        public const uint None = 4294967295U;

        public uint CurrentDominantSpeaker { get; set; }

        public uint[] DominantSpeakerHistory { get; set; }
    }

    public class AudioSocketSettings
    {
        public string CallId { get; set; }

        public bool ReceiveUnmixedMeetingAudio { get; set; }

        public StreamDirection StreamDirections { get; set; }

        public AudioFormat SupportedAudioFormat { get; set; }
    }

    public interface IAudioSocket : IDisposable
    {
        event EventHandler<AudioMediaReceivedEventArgs> AudioMediaReceived;

        event EventHandler<AudioSendStatusChangedEventArgs> AudioSendStatusChanged;

        event EventHandler<DominantSpeakerChangedEventArgs> DominantSpeakerChanged;

        event EventHandler<MediaStreamFailureEventArgs> MediaStreamFailure;

        void Send(AudioMediaBuffer buffer);
    }

    public sealed class AudioSocket : IAudioSocket, IDisposable
    {
        private int disposed;

        public AudioSocket(AudioSocketSettings settings)
        {
            if (settings == null)
            {
                throw new ArgumentNullException("settings");
            }

            if (string.IsNullOrEmpty(settings.CallId))
            {
                throw new ArgumentException("AudioSocketSettings.CallId is required", "settings");
            }

            this.Settings = settings;
            StandIn.Platform.Created(this);
        }

        public event EventHandler<AudioMediaReceivedEventArgs> AudioMediaReceived;

        public event EventHandler<AudioSendStatusChangedEventArgs> AudioSendStatusChanged;

        public event EventHandler<DominantSpeakerChangedEventArgs> DominantSpeakerChanged;

        public event EventHandler<MediaStreamFailureEventArgs> MediaStreamFailure;

        internal AudioSocketSettings Settings { get; private set; }

        internal bool IsDisposed
        {
            get { return Volatile.Read(ref this.disposed) != 0; }
        }

        public void Send(AudioMediaBuffer buffer)
        {
            if (this.IsDisposed)
            {
                throw new ObjectDisposedException("AudioSocket");
            }

            if (this.Settings.StreamDirections != StreamDirection.Sendrecv && this.Settings.StreamDirections != StreamDirection.Sendonly)
            {
                throw new InvalidOperationException("The AudioSocket is not enabled to send media (StreamDirections)");
            }

            StandIn.Platform.Sent(this, buffer);
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref this.disposed, 1) == 0)
            {
                StandIn.Platform.SocketDisposed(this);
            }
        }

        internal bool RaiseAudio(AudioMediaReceivedEventArgs args)
        {
            EventHandler<AudioMediaReceivedEventArgs> handler = this.AudioMediaReceived;
            if (handler == null)
            {
                return false;
            }

            handler(this, args);
            return true;
        }

        internal void RaiseSendStatus(AudioSendStatusChangedEventArgs args)
        {
            EventHandler<AudioSendStatusChangedEventArgs> handler = this.AudioSendStatusChanged;
            if (handler != null)
            {
                handler(this, args);
            }
        }

        internal void RaiseDominantSpeaker(DominantSpeakerChangedEventArgs args)
        {
            EventHandler<DominantSpeakerChangedEventArgs> handler = this.DominantSpeakerChanged;
            if (handler != null)
            {
                handler(this, args);
            }
        }

        internal void RaiseFailure(MediaStreamFailureEventArgs args)
        {
            EventHandler<MediaStreamFailureEventArgs> handler = this.MediaStreamFailure;
            if (handler != null)
            {
                handler(this, args);
            }
        }

        internal int Handlers()
        {
            int count = 0;
            Delegate[] lists =
            {
                this.AudioMediaReceived, this.AudioSendStatusChanged, this.DominantSpeakerChanged, this.MediaStreamFailure,
            };
            foreach (Delegate d in lists)
            {
                if (d != null)
                {
                    count += d.GetInvocationList().Length;
                }
            }

            return count;
        }
    }

    // A received buffer as the library hands it out: its frame data in unmanaged memory, freed when it is disposed.
    internal sealed class ReceivedAudioBuffer : AudioMediaBuffer
    {
        private readonly IntPtr[] blocks;
        private int disposed;

        internal ReceivedAudioBuffer(IntPtr mixed, long length, long timestamp, uint[] activeSpeakers, bool silence,
                                     UnmixedAudioBuffer[] unmixed, IntPtr[] blocks)
        {
            this.Data = mixed;
            this.Length = length;
            this.Timestamp = timestamp;
            this.ActiveSpeakers = activeSpeakers;
            this.IsSilence = silence;
            this.UnmixedAudioBuffers = unmixed;
            this.AudioFormat = AudioFormat.Pcm16K;
            this.blocks = blocks;
        }

        internal bool IsDisposed
        {
            get { return Volatile.Read(ref this.disposed) != 0; }
        }

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref this.disposed, 1) != 0)
            {
                StandIn.Platform.DoubleDisposal();
                return;
            }

            foreach (IntPtr block in this.blocks)
            {
                StandIn.Platform.Free(block);
            }

            StandIn.Platform.BufferDisposed();
        }
    }
}

namespace StandIn
{
    using System;
    using System.Collections.Generic;
    using System.Diagnostics;
    using System.Runtime.InteropServices;
    using System.Threading;
    using Microsoft.Skype.Bots.Media;
    using Newtonsoft.Json.Linq;

    public sealed class SentFrame
    {
        public byte[] Bytes;
        public long Timestamp;
        public string Format;
        public string CallId;
        public string BufferType;
    }

    // The test side: what the engine did to the "library", and the knobs to make it misbehave.
    public static class Platform
    {
        private static readonly object Gate = new object();
        private static readonly List<AudioSocket> SocketList = new List<AudioSocket>();
        private static readonly List<SentFrame> SentList = new List<SentFrame>();
        private static long outstanding;
        private static long buffersCreated;
        private static long buffersDisposed;
        private static long doubleDisposals;
        private static long sendDisposals;
        private static int initializations;
        private static int shutdowns;
        private static int socketsDisposed;
        private static volatile bool initialized;

        public static MediaPlatformSettings LastSettings { get; private set; }

        public static MediaPlatformHealthStatus Health { get; private set; }

        // Make CreateMediaConfiguration throw SkypeMediaException, as the library does when it is overloaded.
        public static bool Overloaded { get; set; }

        // Make Initialize throw, as the library does when, say, the certificate is not in the store.
        public static string FailInitialize { get; set; }

        // Hold each send's disposal back this long (the library disposes a sent buffer when it is done with it).
        public static int SendDisposeDelayMs { get; set; }

        public static int Initializations
        {
            get { return initializations; }
        }

        public static int Shutdowns
        {
            get { return shutdowns; }
        }

        public static bool IsInitialized
        {
            get { return initialized; }
        }

        public static int SocketsDisposed
        {
            get { return socketsDisposed; }
        }

        // Unmanaged blocks the stand-in allocated for received buffers and has not freed yet (0: every buffer disposed).
        public static long Outstanding
        {
            get { return Interlocked.Read(ref outstanding); }
        }

        public static long BuffersCreated
        {
            get { return Interlocked.Read(ref buffersCreated); }
        }

        public static long BuffersDisposed
        {
            get { return Interlocked.Read(ref buffersDisposed); }
        }

        public static long DoubleDisposals
        {
            get { return Interlocked.Read(ref doubleDisposals); }
        }

        public static long SendDisposals
        {
            get { return Interlocked.Read(ref sendDisposals); }
        }

        public static AudioSocket[] Sockets
        {
            get
            {
                lock (Gate)
                {
                    return SocketList.ToArray();
                }
            }
        }

        public static SentFrame[] SentFrames
        {
            get
            {
                lock (Gate)
                {
                    return SentList.ToArray();
                }
            }
        }

        public static void Reset()
        {
            lock (Gate)
            {
                SocketList.Clear();
                SentList.Clear();
            }

            LastSettings = null;
            Health = MediaPlatformHealthStatus.Normal;
            Overloaded = false;
            FailInitialize = null;
            SendDisposeDelayMs = 0;
            initializations = 0;
            shutdowns = 0;
            socketsDisposed = 0;
            initialized = false;
            Interlocked.Exchange(ref buffersCreated, 0);
            Interlocked.Exchange(ref buffersDisposed, 0);
            Interlocked.Exchange(ref doubleDisposals, 0);
            Interlocked.Exchange(ref sendDisposals, 0);
        }

        public static string CallId(AudioSocket socket)
        {
            return socket.Settings.CallId;
        }

        public static bool Unmixed(AudioSocket socket)
        {
            return socket.Settings.ReceiveUnmixedMeetingAudio;
        }

        public static string Direction(AudioSocket socket)
        {
            return socket.Settings.StreamDirections.ToString();
        }

        public static string Format(AudioSocket socket)
        {
            return socket.Settings.SupportedAudioFormat.ToString();
        }

        public static bool IsDisposed(AudioSocket socket)
        {
            return socket.IsDisposed;
        }

        // Event handlers still subscribed on the socket (all four events).
        public static int Handlers(AudioSocket socket)
        {
            return socket.Handlers();
        }

        public static int HealthHandlers()
        {
            return MediaPlatform.HealthHandlers();
        }

        // Raise an event the way the library does: on a thread of its own, not the caller's.
        public static void RaiseSendStatus(AudioSocket socket, MediaSendStatus status)
        {
            OnThread(() => socket.RaiseSendStatus(new AudioSendStatusChangedEventArgs { MediaSendStatus = status }));
        }

        public static void RaiseDominantSpeaker(AudioSocket socket, uint msi)
        {
            OnThread(() => socket.RaiseDominantSpeaker(new DominantSpeakerChangedEventArgs
            {
                CurrentDominantSpeaker = msi,
                DominantSpeakerHistory = msi == DominantSpeakerChangedEventArgs.None ? new uint[0] : new[] { msi },
            }));
        }

        public static void RaiseFailure(AudioSocket socket)
        {
            OnThread(() => socket.RaiseFailure(new MediaStreamFailureEventArgs()));
        }

        public static void RaiseHealth(MediaPlatformHealthStatus current)
        {
            MediaPlatformHealthStatus previous = Health;
            Health = current;
            OnThread(() => MediaPlatform.RaiseHealthChanged(new MediaPlatformHealthChangedEventArgs
            {
                CurrentHealth = current,
                PreviousHealth = previous,
            }));
        }

        internal static void Check(MediaPlatformSettings settings)
        {
            if (FailInitialize != null)
            {
                throw new SkypeMediaException(FailInitialize);
            }

            if (settings == null || settings.MediaPlatformInstanceSettings == null)
            {
                throw new ArgumentNullException("settings");
            }

            MediaPlatformInstanceSettings instance = settings.MediaPlatformInstanceSettings;
            if (string.IsNullOrEmpty(settings.ApplicationId))
            {
                throw new ArgumentException("MediaPlatformSettings.ApplicationId is required");
            }

            if (string.IsNullOrEmpty(instance.CertificateThumbprint))
            {
                throw new ArgumentException("MediaPlatformInstanceSettings.CertificateThumbprint is required");
            }

            if (instance.InstanceInternalPort <= 0 || instance.InstancePublicPort <= 0)
            {
                throw new ArgumentException("MediaPlatformInstanceSettings ports are required");
            }

            if (instance.InstancePublicIPAddress == null || string.IsNullOrEmpty(instance.ServiceFqdn))
            {
                throw new ArgumentException("MediaPlatformInstanceSettings.InstancePublicIPAddress and ServiceFqdn are required");
            }
        }

        internal static void Initialized(MediaPlatformSettings settings)
        {
            LastSettings = settings;
            Interlocked.Increment(ref initializations);
            initialized = true;
        }

        internal static void ShutDown()
        {
            Interlocked.Increment(ref shutdowns);
            initialized = false;
        }

        internal static JObject Configuration(IAudioSocket audioSocket)
        {
            if (!initialized)
            {
                throw new InvalidOperationException("MediaPlatform is not initialized");
            }

            if (Overloaded)
            {
                throw new SkypeMediaException("The media platform is currently overloaded and cannot handle new calls");
            }

            AudioSocket socket = audioSocket as AudioSocket;
            if (socket == null || socket.IsDisposed)
            {
                throw new ArgumentException("audioSocket");
            }

            MediaPlatformInstanceSettings instance = LastSettings.MediaPlatformInstanceSettings;
            string compact = string.Format(
                "{{\"standIn\":true,\"callId\":\"{0}\",\"mpUri\":\"net.tcp://{1}:{2}/MediaProcessor\",\"direction\":\"{3}\",\"unmixed\":{4}}}",
                socket.Settings.CallId,
                instance.ServiceFqdn,
                instance.InstancePublicPort,
                socket.Settings.StreamDirections,
                socket.Settings.ReceiveUnmixedMeetingAudio ? "true" : "false");
            return JObject.Parse(compact);
        }

        internal static void Created(AudioSocket socket)
        {
            lock (Gate)
            {
                SocketList.Add(socket);
            }
        }

        internal static void SocketDisposed(AudioSocket socket)
        {
            Interlocked.Increment(ref socketsDisposed);
        }

        internal static void Sent(AudioSocket socket, AudioMediaBuffer buffer)
        {
            byte[] bytes = new byte[buffer.Length];
            Marshal.Copy(buffer.Data, bytes, 0, bytes.Length);
            lock (Gate)
            {
                SentList.Add(new SentFrame
                {
                    Bytes = bytes,
                    Timestamp = buffer.Timestamp,
                    Format = buffer.AudioFormat.ToString(),
                    CallId = socket.Settings.CallId,
                    BufferType = buffer.GetType().FullName,
                });
            }

            // The buffer stays in use after Send returns; the platform disposes it, later, on a thread of its own.
            int delay = SendDisposeDelayMs;
            ThreadPool.QueueUserWorkItem(_ =>
            {
                if (delay > 0)
                {
                    Thread.Sleep(delay);
                }

                buffer.Dispose();
                Interlocked.Increment(ref sendDisposals);
            });
        }

        internal static IntPtr Alloc(int length)
        {
            Interlocked.Increment(ref outstanding);
            return Marshal.AllocHGlobal(length);
        }

        internal static void Free(IntPtr block)
        {
            Marshal.FreeHGlobal(block);
            Interlocked.Decrement(ref outstanding);
        }

        internal static void BufferCreated()
        {
            Interlocked.Increment(ref buffersCreated);
        }

        internal static void BufferDisposed()
        {
            Interlocked.Increment(ref buffersDisposed);
        }

        internal static void DoubleDisposal()
        {
            Interlocked.Increment(ref doubleDisposals);
        }

        private static void OnThread(ThreadStart work)
        {
            Thread thread = new Thread(work) { IsBackground = true, Name = "stand-in media event" };
            thread.Start();
            thread.Join();
        }
    }

    // What the stand-in puts in each buffer, so a test can check every byte that reaches the engine.
    public static class Pattern
    {
        public const int FrameBytes = 640;

        public static byte At(int tick, uint speaker, int index)
        {
            return (byte)(((tick * 31) + (speaker * 17) + index) & 0xFF);
        }

        // Speaker k of a feed speaks at tick t unless t % (k + 3) == 0: a changing set of up to four speakers.
        public static bool Speaks(int tick, int k)
        {
            return tick % (k + 3) != 0;
        }

        // A mixed buffer is silence at every tenth tick (IsSilence), whoever the active speakers are.
        public static bool Silent(int tick)
        {
            return tick % 10 == 9;
        }
    }

    // One socket's received audio: 20 ms buffers raised on a System.Threading.Thread of the stand-in's own, each call into
    // the engine's handler timed. Events are serialized, one at a time, as the library documents.
    public sealed class Feeder
    {
        public const long TimestampBase = 638000000000000000L;
        public const long TicksPerFrame = 200000L; // 20 ms in 100 ns units

        private readonly AudioSocket socket;
        private readonly uint[] speakers;
        private readonly int ticks;
        private readonly int intervalMs;
        private readonly bool unmixed;
        private readonly bool failAtEnd;
        private readonly Thread thread;
        private readonly List<ReceivedAudioBuffer> undisposed = new List<ReceivedAudioBuffer>();

        private Feeder(AudioSocket socket, uint[] speakers, int ticks, int intervalMs, bool unmixed, bool failAtEnd)
        {
            this.socket = socket;
            this.speakers = speakers;
            this.ticks = ticks;
            this.intervalMs = intervalMs;
            this.unmixed = unmixed;
            this.failAtEnd = failAtEnd;
            this.HandlerMicros = new double[ticks];
            this.thread = new Thread(this.Run) { IsBackground = true, Name = "stand-in media receive" };
        }

        // Buffers raised (handler called).
        public int Raised { get; private set; }

        // Buffers the handler returned from without disposing (the library requires the app to dispose each one).
        public int LeftUndisposed { get; private set; }

        // Microseconds each call into the handler took, on the stand-in's thread.
        public double[] HandlerMicros { get; private set; }

        public int ManagedThreadId { get; private set; }

        public string Error { get; private set; }

        public double ElapsedSeconds { get; private set; }

        public static Feeder Start(AudioSocket socket, uint[] speakers, int ticks, int intervalMs, bool unmixed, bool failAtEnd)
        {
            Feeder feeder = new Feeder(socket, speakers, ticks, intervalMs, unmixed, failAtEnd);
            feeder.thread.Start();
            return feeder;
        }

        public bool Join(int milliseconds)
        {
            return this.thread.Join(milliseconds);
        }

        private void Run()
        {
            this.ManagedThreadId = Thread.CurrentThread.ManagedThreadId;
            Stopwatch total = Stopwatch.StartNew();
            Stopwatch watch = new Stopwatch();
            try
            {
                for (int tick = 0; tick < this.ticks && !this.socket.IsDisposed; tick++)
                {
                    ReceivedAudioBuffer buffer = this.Buffer(tick);
                    watch.Restart();
                    bool handled = this.socket.RaiseAudio(new AudioMediaReceivedEventArgs { Buffer = buffer });
                    watch.Stop();
                    this.HandlerMicros[tick] = watch.Elapsed.TotalMilliseconds * 1000.0;
                    this.Raised++;
                    if (!handled || !buffer.IsDisposed)
                    {
                        this.LeftUndisposed++;
                        this.undisposed.Add(buffer);
                    }

                    if (this.intervalMs > 0)
                    {
                        Thread.Sleep(this.intervalMs);
                    }
                }

                if (this.failAtEnd && !this.socket.IsDisposed)
                {
                    this.socket.RaiseFailure(new MediaStreamFailureEventArgs());
                }
            }
            catch (Exception ex)
            {
                // An exception out of the handler reaches the library's thread: the engine must never let one through.
                this.Error = ex.GetType().FullName + ": " + ex.Message;
            }
            finally
            {
                this.ElapsedSeconds = total.Elapsed.TotalSeconds;

                // The stand-in frees what the handler left, so one failing test does not leak into the next numbers.
                foreach (ReceivedAudioBuffer buffer in this.undisposed)
                {
                    buffer.Dispose();
                }
            }
        }

        private ReceivedAudioBuffer Buffer(int tick)
        {
            List<uint> active = new List<uint>();
            for (int k = 0; k < this.speakers.Length; k++)
            {
                if (Pattern.Speaks(tick, k))
                {
                    active.Add(this.speakers[k]);
                }
            }

            long timestamp = TimestampBase + (tick * TicksPerFrame);
            List<IntPtr> blocks = new List<IntPtr>();
            Platform.BufferCreated();
            if (this.unmixed)
            {
                // In unmixed mode the library gives only unmixed buffers (Data carries nothing useful): up to four.
                UnmixedAudioBuffer[] parts = new UnmixedAudioBuffer[Math.Min(active.Count, 4)];
                for (int i = 0; i < parts.Length; i++)
                {
                    IntPtr block = Fill(tick, active[i]);
                    blocks.Add(block);
                    parts[i] = new UnmixedAudioBuffer(block, Pattern.FrameBytes, active[i], timestamp - 1000);
                }

                IntPtr mixed = Platform.Alloc(Pattern.FrameBytes);
                blocks.Add(mixed);
                byte[] zeros = new byte[Pattern.FrameBytes];
                Marshal.Copy(zeros, 0, mixed, zeros.Length);
                return new ReceivedAudioBuffer(mixed, Pattern.FrameBytes, timestamp, active.ToArray(), active.Count == 0,
                                               parts, blocks.ToArray());
            }

            // Mixed (a 1:1 call, or unmixed not requested): one buffer; UnmixedAudioBuffers is null.
            IntPtr data = Fill(tick, 0);
            blocks.Add(data);
            return new ReceivedAudioBuffer(data, Pattern.FrameBytes, timestamp, active.ToArray(), Pattern.Silent(tick),
                                           null, blocks.ToArray());
        }

        private static IntPtr Fill(int tick, uint speaker)
        {
            byte[] bytes = new byte[Pattern.FrameBytes];
            for (int i = 0; i < bytes.Length; i++)
            {
                bytes[i] = Pattern.At(tick, speaker, i);
            }

            IntPtr block = Platform.Alloc(bytes.Length);
            Marshal.Copy(bytes, 0, block, bytes.Length);
            return block;
        }
    }
}
