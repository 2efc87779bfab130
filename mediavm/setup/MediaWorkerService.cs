// The media worker as a Windows service: a small service host that runs `python -m mediavm` and reports to the
// Service Control Manager. setup.ps1 compiles it on the VM with Windows PowerShell's Add-Type (the .NET Framework
// C# compiler every Windows Server has: C# 5, so no string interpolation or `?.`), so nothing is downloaded for
// it and its source is reviewed here. tests/test_setup_script.py parses it.
//
// Command line (the service's ImagePath, written by setup.ps1):
//   MediaWorkerService.exe <python.exe> <working folder> <log file> <stop timeout seconds>
//
// - Start: runs `<python.exe> -m mediavm` in <working folder>, with the service's environment (the registry value
//   HKLM\SYSTEM\CurrentControlSet\Services\MediaWorker\Environment, which setup.ps1 writes), its standard output
//   and error appended to <log file> (renamed to <log file>.1 when it passes 50 MB at start).
// - The worker exits on its own (a crash, or exit status 2 for unusable settings): the host logs it to the
//   Application event log and exits 1 without reporting a stop, so the Service Control Manager's failure actions
//   (sc.exe failure ... restart) start it again.
// - Stop (or shutdown): Ctrl+C to the worker's console (Python raises KeyboardInterrupt), up to <stop timeout>
//   seconds for it to exit, then the whole process tree is ended (taskkill /T /F). Draining calls before a
//   scale-in is the worker's own job (scheduled events); this only bounds an operator's stop.
using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using System.ServiceProcess;
using System.Text;
using System.Threading;

namespace MediaWorkerHost
{
    public sealed class WorkerService : ServiceBase
    {
        public const string Name = "MediaWorker";
        const long MaxLogBytes = 50L * 1024 * 1024;
        const uint CtrlCEvent = 0;

        [DllImport("kernel32.dll", SetLastError = true)]
        static extern bool AttachConsole(uint processId);

        [DllImport("kernel32.dll", SetLastError = true)]
        static extern bool FreeConsole();

        [DllImport("kernel32.dll", SetLastError = true)]
        static extern bool SetConsoleCtrlHandler(IntPtr handler, bool add);

        [DllImport("kernel32.dll", SetLastError = true)]
        static extern bool GenerateConsoleCtrlEvent(uint ctrlEvent, uint processGroupId);

        readonly string python;
        readonly string workingFolder;
        readonly string logFile;
        readonly int stopTimeoutSeconds;
        readonly object logLock = new object();
        Process worker;
        StreamWriter log;
        volatile bool stopping;

        public WorkerService(string[] args)
        {
            if (args.Length != 4)
            {
                throw new ArgumentException("usage: MediaWorkerService.exe <python.exe> <working folder> <log file> <stop timeout seconds>");
            }
            python = args[0];
            workingFolder = args[1];
            logFile = args[2];
            stopTimeoutSeconds = int.Parse(args[3]);
            ServiceName = Name;
            CanStop = true;
            CanShutdown = true;
            AutoLog = true;
        }

        protected override void OnStart(string[] startArgs)
        {
            OpenLog();
            Note("starting " + python + " -m mediavm in " + workingFolder);
            ProcessStartInfo info = new ProcessStartInfo(python, "-m mediavm");
            info.WorkingDirectory = workingFolder;
            info.UseShellExecute = false;
            info.CreateNoWindow = true;
            info.RedirectStandardOutput = true;
            info.RedirectStandardError = true;
            info.StandardOutputEncoding = Encoding.UTF8;
            info.StandardErrorEncoding = Encoding.UTF8;
            worker = new Process();
            worker.StartInfo = info;
            worker.EnableRaisingEvents = true;
            worker.OutputDataReceived += OnOutput;
            worker.ErrorDataReceived += OnOutput;
            worker.Exited += OnWorkerExited;
            worker.Start();
            worker.BeginOutputReadLine();
            worker.BeginErrorReadLine();
            Note("worker process " + worker.Id + " started");
        }

        protected override void OnStop()
        {
            StopWorker();
        }

        protected override void OnShutdown()
        {
            StopWorker();
        }

        void StopWorker()
        {
            stopping = true;
            if (worker == null || worker.HasExited)
            {
                CloseLog();
                return;
            }
            Note("stopping the worker (Ctrl+C, then up to " + stopTimeoutSeconds + " s)");
            SendCtrlC(worker.Id);
            DateTime deadline = DateTime.UtcNow.AddSeconds(stopTimeoutSeconds);
            while (!worker.WaitForExit(2000))
            {
                if (DateTime.UtcNow >= deadline)
                {
                    Note("the worker did not exit in time; ending its process tree");
                    KillTree(worker.Id);
                    worker.WaitForExit(10000);
                    break;
                }
                RequestAdditionalTime(4000);
            }
            Note("the worker exited");
            CloseLog();
        }

        static void SendCtrlC(int processId)
        {
            // A service has no console: borrow the worker's, ignore the event ourselves, and send it.
            FreeConsole();
            if (AttachConsole((uint)processId))
            {
                SetConsoleCtrlHandler(IntPtr.Zero, true);
                GenerateConsoleCtrlEvent(CtrlCEvent, 0);
                Thread.Sleep(500);
                FreeConsole();
                SetConsoleCtrlHandler(IntPtr.Zero, false);
            }
        }

        static void KillTree(int processId)
        {
            ProcessStartInfo info = new ProcessStartInfo("taskkill.exe", "/PID " + processId + " /T /F");
            info.UseShellExecute = false;
            info.CreateNoWindow = true;
            using (Process kill = Process.Start(info))
            {
                kill.WaitForExit(30000);
            }
        }

        void OnWorkerExited(object sender, EventArgs e)
        {
            if (stopping)
            {
                return;
            }
            int code = worker.ExitCode;
            string message = "The media worker exited on its own with status " + code +
                (code == 2 ? " (its settings are not usable: see " + logFile + ")" : " (see " + logFile + ")") +
                "; the service stops with an error so that its failure actions restart it.";
            Note(message);
            try
            {
                EventLog.WriteEntry(message, EventLogEntryType.Error, 1000 + Math.Max(0, Math.Min(code, 255)));
            }
            catch (Exception)
            {
                // The event source may be missing; the log file has it.
            }
            CloseLog();
            Environment.Exit(1);
        }

        void OnOutput(object sender, DataReceivedEventArgs e)
        {
            if (e.Data != null)
            {
                Write(e.Data);
            }
        }

        void OpenLog()
        {
            Directory.CreateDirectory(Path.GetDirectoryName(logFile));
            FileInfo existing = new FileInfo(logFile);
            if (existing.Exists && existing.Length > MaxLogBytes)
            {
                string previous = logFile + ".1";
                if (File.Exists(previous))
                {
                    File.Delete(previous);
                }
                File.Move(logFile, previous);
            }
            FileStream stream = new FileStream(logFile, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
            log = new StreamWriter(stream, new UTF8Encoding(false));
            log.AutoFlush = true;
        }

        void Note(string line)
        {
            Write(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss,fff") + " service host: " + line);
        }

        void Write(string line)
        {
            lock (logLock)
            {
                if (log != null)
                {
                    log.WriteLine(line);
                }
            }
        }

        void CloseLog()
        {
            lock (logLock)
            {
                if (log != null)
                {
                    log.Dispose();
                    log = null;
                }
            }
        }

        public static void Main(string[] args)
        {
            ServiceBase.Run(new WorkerService(args));
        }
    }
}
