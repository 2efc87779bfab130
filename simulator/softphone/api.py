"""The softphone's HTTP face, on the simulator's own server: the page, and a small JSON control API.

    GET  /softphone/                         the page (index.html, app.js, style.css); / and /softphone lead there
    GET  /softphone/config                   the page's defaults: from, to, the bot's numbers, the keypad, the webhook
    GET  /softphone/calls                    every call the simulator holds: id, title, direction, state
    POST /softphone/calls                    {"from": "+1…", "to": "+1…"} -> 201, the call (as GET shows it)
    GET  /softphone/calls/{id}               the call: state, result, transcript, prompts, tones, recordings
    GET  /softphone/calls/{id}/events        Server-Sent Events: state, line and prompt events as they happen, then end
    POST /softphone/calls/{id}/tones         {"keys": "2"} -> 202: the caller presses keys
    POST /softphone/calls/{id}/speech        {"seconds": 3} -> 202: the caller talks into the next recording
    POST /softphone/calls/{id}/hangup        -> 200: the caller hangs up (an ended call stays ended)
    GET  /softphone/calls/{id}/prompts/{n}   the WAV of the call's n-th prompt, fetched from the URI the bot sent

Refusals are JSON, `{"error": reason}`: 400 for bad input, 404 for an unknown call or prompt (or one that failed
to play), 409 for keys or speech on a call that has ended, 502 when the bot's prompt could not be fetched or is
not a WAV. Only this machine's own pages may use it: a request whose Host is not this server on loopback (DNS
rebinding), or whose Origin is another site's, gets 403; a POST body that is not `application/json`, 415. A
prompt is fetched only from where the bot's prompts come from (`prompt_origins`), without following redirects,
at most MAX_PROMPT_BYTES. The decisions are in `simulator.softphone.control`; the handlers here only read
requests and write answers.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Collection
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import hdrs, web

from simulator.calls import SimCall
from simulator.core import Simulator
from simulator.media import wav_seconds
from simulator.server import Routes
from simulator.softphone.control import (
    KEYPAD,
    AudioCache,
    BadRequest,
    Cursor,
    Event,
    Refused,
    call_json,
    call_summary,
    finished,
    parse_dial,
    parse_keys,
    parse_speech,
    prompt_to_fetch,
    state_json,
)

STATIC = Path(__file__).resolve().parent / "static"
#: The page's files, by the path under /softphone/ they are served at.
PAGES = {"": ("index.html", "text/html"), "app.js": ("app.js", "text/javascript"),
         "style.css": ("style.css", "text/css")}
#: How often an event stream looks for news (wall seconds), and sends a comment to keep a quiet stream open.
POLL = 0.1
HEARTBEAT = 15.0
PROMPT_FETCH_TIMEOUT = 10.0
#: The largest prompt the softphone fetches: over five minutes of 16 kHz 16-bit mono PCM.
MAX_PROMPT_BYTES = 10 * 1024 * 1024
#: The prompts kept once fetched: at most this many, and this many bytes in all.
CACHED_PROMPTS = 64
CACHED_BYTES = 64 * 1024 * 1024
#: The names this server answers to (with its port): a page on another name reaching it is DNS rebinding.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

#: Where the bot's prompts may come from, asked at each fetch (the bot's settings are known only once it starts).
PromptOrigins = Callable[[], Collection[str]]


def routes(*, default_from: str, prompt_origins: PromptOrigins | None = None) -> Routes:
    """The softphone's routes for `SimulatorServer(routes=...)` / `Simulation(sim_routes=...)`; `default_from`:
    the caller the page offers (the demo's). `prompt_origins`: the URLs whose origins the prompt proxy fetches
    from (`lambda: [control.prompt_origin(simulation.env)]`); default: the bot's calling webhook's."""
    def install(app: web.Application, sim: Simulator) -> None:
        Softphone(sim, default_from=default_from, prompt_origins=prompt_origins).install(app)

    return install


Handler = Callable[["Softphone", web.Request], Awaitable[web.StreamResponse]]


def refusals(handler: Handler) -> Handler:
    """BadRequest -> 400, Refused -> its status, each as `{"error": reason}`."""
    @functools.wraps(handler)
    async def answer(self: Softphone, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(self, request)
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except Refused as exc:
            return web.json_response({"error": exc.reason}, status=exc.status)

    return answer


def _port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return int(sockname[1]) if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def _trespass(request: web.Request) -> Refused | None:
    """Why a request may not use the softphone, or None: another site's page (its Origin), a name that is not
    this server's (a DNS-rebound Host), a POST body that is not JSON (what a cross-site form can send)."""
    port = _port(request)
    own = {f"{name}:{port}" for name in LOOPBACK_NAMES} | (set(LOOPBACK_NAMES) if port == 80 else set())
    host = request.headers.get(hdrs.HOST, "").lower()
    if host not in own:
        return Refused(403, f"Host {host!r} is not this server: use http://127.0.0.1:{port} (a page on another "
                            "name reaching this port is refused)")
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin.lower() not in {f"http://{name}" for name in own}:
        return Refused(403, f"Origin {origin!r} is another site: only the softphone's own page "
                            f"(http://127.0.0.1:{port}) may use it")
    if request.method == hdrs.METH_POST and (hdrs.CONTENT_TYPE in request.headers or request.body_exists) \
            and request.content_type != "application/json":
        sent = f"is {request.content_type}" if hdrs.CONTENT_TYPE in request.headers else "has no Content-Type"
        return Refused(415, f"the body {sent}: send it as application/json")
    return None


def _guarded(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
             ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @functools.wraps(handler)
    async def guard(request: web.Request) -> web.StreamResponse:
        refused = _trespass(request)
        if refused is not None:
            return web.json_response({"error": refused.reason}, status=refused.status)
        return await handler(request)

    return guard


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None


class Softphone:
    def __init__(self, sim: Simulator, *, default_from: str, prompt_origins: PromptOrigins | None = None) -> None:
        self.sim = sim
        self.default_from = default_from
        self.prompt_origins = prompt_origins or (lambda: [sim.bot.webhook_url])
        self._closing = asyncio.Event()
        self._audio = AudioCache(items=CACHED_PROMPTS, size=CACHED_BYTES)

    def install(self, app: web.Application) -> None:
        def get(path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
            app.router.add_get(path, _guarded(handler))

        def post(path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
            app.router.add_post(path, _guarded(handler))

        get("/", self.home)
        get("/softphone", self.home)
        for path in PAGES:
            get(f"/softphone/{path}", self.page)
        get("/softphone/config", self.config)
        get("/softphone/calls", self.calls)
        post("/softphone/calls", self.dial)
        get("/softphone/calls/{id}", self.show)
        get("/softphone/calls/{id}/events", self.events)
        post("/softphone/calls/{id}/tones", self.tones)
        post("/softphone/calls/{id}/speech", self.speech)
        post("/softphone/calls/{id}/hangup", self.hangup)
        get("/softphone/calls/{id}/prompts/{n}", self.prompt)
        app.on_shutdown.append(self._shutdown)

    async def _shutdown(self, app: web.Application) -> None:
        self._closing.set()  # open event streams end now, not after the server's shutdown timeout

    def _number(self) -> str:
        return next(iter(self.sim.bot.numbers), "app")

    def _call(self, request: web.Request, *, live: bool = False) -> SimCall:
        call_id = request.match_info["id"]
        call = self.sim.calls.get(call_id)
        if call is None:
            raise Refused(404, f"no call {call_id!r} (GET /softphone/calls lists them)")
        if live and call.ended:
            raise Refused(409, f"call {call_id} has ended")
        return call

    # -- the page ------------------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/softphone/")

    async def page(self, request: web.Request) -> web.StreamResponse:
        name, kind = PAGES[request.path.removeprefix("/softphone/")]
        return web.Response(body=(STATIC / name).read_bytes(), content_type=kind, charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def config(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"from": self.default_from, "to": self._number(),
                                  "numbers": list(self.sim.bot.numbers), "keypad": KEYPAD,
                                  "webhook": self.sim.bot.webhook_url})

    # -- the control API -------------------------------------------------------------------------------

    async def calls(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([call_summary(c) for c in self.sim.calls.values()])

    @refusals
    async def dial(self, request: web.Request) -> web.StreamResponse:
        dial = parse_dial(await _body(request), default_from=self.default_from, default_to=self._number(),
                          instances=list(dict.fromkeys(self.sim.bot.numbers.values())))
        try:
            call = self.sim.dial(source=dial.source, to=dial.to, display_name=dial.display_name)
        except ValueError as exc:
            raise BadRequest(f"to: {exc}") from None
        return web.json_response(call_json(call, self.sim.now()), status=201,
                                 headers={"Location": f"/softphone/calls/{call.id}"})

    @refusals
    async def show(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(call_json(self._call(request), self.sim.now()))

    @refusals
    async def tones(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request, live=True)
        keys = parse_keys(await _body(request))
        self.sim.press(call, keys)
        return web.json_response({"id": call.id, "keys": keys}, status=202)

    @refusals
    async def speech(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request, live=True)
        seconds = parse_speech(await _body(request))
        self.sim.speak(call, seconds or None)
        return web.json_response({"id": call.id, "seconds": seconds}, status=202)

    @refusals
    async def hangup(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request)
        if not call.ended:
            self.sim.hang_up(call)
        return web.json_response(call_json(call, self.sim.now()))

    @refusals
    async def prompt(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request)
        uri = prompt_to_fetch(call, request.match_info["n"], self.prompt_origins())
        data = self._audio.get(uri)
        if data is None:
            data = await self._fetch(uri)
            self._audio.put(uri, data)
        return web.Response(body=data, content_type="audio/wav", headers={"Cache-Control": "no-store"})

    async def _fetch(self, uri: str) -> bytes:
        """The prompt from where the bot serves it, as Graph's media platform fetches it: no redirect followed,
        at most MAX_PROMPT_BYTES, and a WAV Graph plays (what the simulator measured the prompt by)."""
        try:
            async with self.sim.clock.busy(), self.sim.session.get(
                    uri, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=PROMPT_FETCH_TIMEOUT)) as response:
                if response.status != 200:
                    raise Refused(502, f"the bot answered {response.status} for {uri}")
                if (response.content_length or 0) > MAX_PROMPT_BYTES:
                    raise Refused(502, f"{uri} is larger than {MAX_PROMPT_BYTES // 2**20} MB")
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > MAX_PROMPT_BYTES:
                        raise Refused(502, f"{uri} is larger than {MAX_PROMPT_BYTES // 2**20} MB")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: a host IDNA cannot encode
            raise Refused(502, f"could not fetch {uri}: {exc or type(exc).__name__}") from None
        try:
            wav_seconds(bytes(data))
        except ValueError as exc:
            raise Refused(502, f"{uri} is not a prompt Graph plays: {exc}") from None
        return bytes(data)

    @refusals
    async def events(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        cursor = Cursor()
        quiet = 0.0
        with suppress(ConnectionResetError):  # the page went away
            while True:
                now = self.sim.now()
                chunk = b"".join(event.encode() for event in cursor.changes(call, now))
                done = finished(call, now) or self._closing.is_set()
                if done:
                    chunk += Event("end", state_json(call)).encode()
                if chunk or quiet >= HEARTBEAT:
                    await response.write(chunk or b": still here\n\n")
                    quiet = 0.0
                if done:
                    break
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), POLL)
                quiet += POLL
        return response
