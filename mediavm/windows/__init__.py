"""The Windows media engine: the MediaEngine interface (mediavm/engine.py) over Microsoft's real-time media library.

- `engine.py`: `WindowsEngine` and its sessions, pure asyncio: a bounded queue per call that the library's threads
  fill and the worker drains, the send path, health. It never imports pythonnet itself.
- `interop.py`: the only module that touches .NET (pythonnet): loading the runtime and the library, the media
  platform's initialisation and shutdown, one AudioSocket per call and its configuration blob, the event handlers that
  run on the library's threads (copy each buffer out, dispose it, hand the copy over), sending.

Importing this package does not load .NET: `WindowsEngine.start()` does (docs/media.md, "The Windows engine").
"""

from mediavm.windows.engine import MediaLibraryError, WindowsEngine, WindowsSession

__all__ = ["MediaLibraryError", "WindowsEngine", "WindowsSession"]
