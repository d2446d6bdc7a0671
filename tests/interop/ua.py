#!/usr/bin/env python3
"""Scriptable SIP user agent for interop tests, built on pjsua2.

Driven over stdin (one command per line) / stdout (one JSON object per line).

Usage:
  python ua.py --name NAME --port LPORT [--transport udp|tcp]
               [--registrar HOST:PORT --user U --password P [--expires SECS]]
               [--auth-user U --auth-password P]   (digest for calls, no REGISTER)
               [--behaviour answer|busy|decline|unavailable|ignore]
               [--answer-delay SECS] [--log-file PATH] [--log-level N]
               [--codecs PCMU,PCMA,...]

--codecs keeps only the listed codecs, in that order of preference (each
entry a pjsua codec id prefix, case-insensitive: "PCMU", "G722",
"speex/8000").  Without it pjsua's defaults apply, which prefer speex/16000
when two of these agents talk to each other directly (speex mangles pure
tones; use --codecs PCMU for audio checks without the daemon).

Commands (stdin):
  call <sip-uri> [Header: value]...   place an outgoing call
  hangup [call|all] [code]            hang up all calls or one call
  answer [call|all] [code]            answer a ringing incoming call (default 200)
  dtmf <call> <digits>                send RFC 2833 DTMF on a confirmed call
  xfer <call> <sip-uri>               blind transfer: REFER with Refer-To <uri>
                                      (events xfer_sent, then xfer_status for
                                      the REFER's answer and each NOTIFY)
  xfer_replaces <call> <other-call>   attended transfer: REFER on <call> with
                                      Refer-To <other's remote>?Replaces=<other's
                                      dialog> (events as for xfer)
  hold <call> / unhold <call>         re-INVITE with a=sendonly / a=sendrecv
                                      (events hold_sent/unhold_sent, then
                                      "media" with status local_hold/active)
  register                            (re-)send REGISTER
  unregister                          send REGISTER with Expires: 0
  behaviour <b>                       change behaviour for later incoming calls
  play <call> <wav-path>              loop a WAV file (PCM 16-bit) into the call
                                      (what the far end hears); replaces an
                                      earlier play/tone on that call
  tone <call> <freq-hz> [amplitude]   loop a sine tone into the call (amplitude
                                      0..1 of full scale, default 0.5); the WAV
                                      is generated at the conference clock rate
                                      (16 kHz), 4 s of whole periods (the
                                      frequency is rounded to a multiple of
                                      0.25 Hz), in a temp file removed later
  stopplay <call>                     stop the play/tone on that call
  record <call> <wav-path>            record what the call RECEIVES from the far
                                      end into a 16-bit mono WAV at the
                                      conference clock rate (16 kHz); path must
                                      end in .wav; replaces an earlier recording
  stoprecord <call>                   stop recording and finalise the WAV
  stats <call>                        report RTP packet counters of the call
  quit                                clean shutdown (EOF on stdin does the same)
play/tone/record given before the call's media is up (e.g. while ringing)
are queued and start when it is; their event is emitted then.  Media can be
up before "answered": these agents put SDP in their 180.  A call's players
and recorders are dropped when it disconnects (a running recording is
finalised and reported with "recorded"; queued commands get an "error").

Events (stdout, one compact JSON object per line, flushed immediately).
"call" is this process's own call number (1, 2, 3... never reused; outgoing
and incoming share the counter).  pjsip's own log never reaches stdout.
  {"event":"ready","port":5071,"transport":"udp"}
  {"event":"registered","code":200,"expires":300}
  {"event":"register_failed","code":403,"reason":"Forbidden"}
        (no answer: code 408 after ~32 s on UDP; TCP refused: 503 at once)
  {"event":"unregistered","code":200}  /  {"event":"unregister_failed",...}
  {"event":"calling","call":1,"uri":"sip:100@127.0.0.1:5070"}  (after `call`)
  {"event":"early","call":1,"code":180,"reason":"Ringing"}     (outgoing only)
  {"event":"incoming","call":2,"from":"<sip:a@h:p>","from_header":"<raw From>",
   "remote_uri":"<pjsua's remote URI>","to":"<raw To>","ruri":"sip:u@...",
   "call_id":"...","src":"127.0.0.1:5070","headers":{"X-Priority":"5",...}}
  {"event":"ringing","call":2}           (we sent 180 for an incoming call)
  {"event":"rejected","call":2,"code":486}  (behaviour busy/decline/unavailable)
  {"event":"rejected_incoming","code":486,"reason":"Busy Here","call_id":...,
   "from":...,"to":...}                  (pjsua refused it itself, e.g. >4 calls)
  {"event":"answered","call":1}          (CONFIRMED, both directions)
  {"event":"dtmf","call":1,"digit":"5"}
  {"event":"media","call":1,"status":"active","remote_rtp":"127.0.0.1:4000",
   "codec":"PCMU","clock_rate":8000}
        (each onCallMediaState with an audio stream; status is active,
         local_hold, remote_hold, none or error; remote_rtp/codec/clock_rate
         are null when pjsua has no stream info)
  {"event":"playing","call":1,"file":"/path/x.wav"}          (play)
  {"event":"playing","call":1,"file":"/tmp/ua-tone-...wav","tone":700,
   "tone_hz":700.0,"amplitude":0.5,"rate":16000}            (tone)
  {"event":"stopped","call":1,"file":"..."}  (stopplay; file null if nothing
                                             was playing)
  {"event":"recording","call":1,"file":"/path/rec.wav","rate":16000}
  {"event":"recorded","call":1,"file":"/path/rec.wav","bytes":96044}
        (after stoprecord, or when the call disconnected while recording;
         the header is final when this is emitted; bytes = WAV file size
         including the 44-byte header; 0 if stoprecord cancelled a queued
         record, and then no file is written)
  {"event":"rtp_stats","call":1,"rx_packets":150,"tx_packets":151,
   "rx_bytes":24000,"tx_bytes":24160,"rx_loss":0}
  {"event":"disconnected","call":1,"code":487,"reason":"Request Terminated",
   "duration_ms":0,"total_ms":1234,"answered":false}
        (code = last SIP status of the call; after a normal BYE it is 200)
  {"event":"xfer_status","call":1,"code":100,"reason":"Trying","final":false}
        (the REFER's answer and each NOTIFY sipfrag; a refused REFER is one
         final status, e.g. 404)
  {"event":"behaviour","behaviour":"busy"}   (ack of `behaviour`)
  {"event":"error","message":"..."}      (may carry "call"/"status")
  {"event":"exit","code":0}              (last line; process exits right after)
"""

import argparse
import array
import gc
import json
import math
import os
import queue
import re
import signal
import sys
import tempfile
import threading
import time
import wave

# --------------------------------------------------------------------------
# Keep stdout clean: pjlib writes its console log (and a few banner lines
# before our log config is applied) straight to fd 1 with printf.  Move the
# real stdout to a private fd for our JSON and point fd 1 at stderr.
# --------------------------------------------------------------------------
_json_fd = os.dup(1)
os.dup2(2, 1)
_out = os.fdopen(_json_fd, "w", buffering=1, encoding="utf-8")
sys.stdout = sys.stderr  # stray print()s go to stderr too

import pjsua2 as pj  # noqa: E402  (must come after the fd shuffle)

BEHAVIOURS = {
    "answer": 200,
    "busy": 486,
    "decline": 603,
    "unavailable": 480,
    "ignore": None,
}

_out_broken = False


def emit(event, **fields):
    global _out_broken
    obj = {"event": event}
    obj.update(fields)
    if _out_broken:
        return
    try:
        _out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        _out.flush()
    except (BrokenPipeError, OSError):
        _out_broken = True


# Compact header forms (RFC 3261 7.3.3 + common extensions).
COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding",
    "l": "Content-Length", "c": "Content-Type", "f": "From", "s": "Subject",
    "k": "Supported", "t": "To", "v": "Via", "o": "Event", "r": "Refer-To",
    "b": "Referred-By", "u": "Allow-Events", "x": "Session-Expires",
}


def parse_sip_message(raw):
    """Return (start_line, {header: value}) from a raw SIP message.

    Header names keep the spelling of the first occurrence; repeated headers
    are joined with ", ".  Compact forms are expanded.
    """
    text = raw.replace("\r\n", "\n")
    head = text.split("\n\n", 1)[0]
    lines = head.split("\n")
    start = lines[0] if lines else ""
    unfolded = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    headers = {}
    lower = {}
    for line in unfolded:
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        name = name.strip()
        value = value.strip()
        name = COMPACT.get(name.lower(), name) if len(name) == 1 else name
        key = name.lower()
        if key in lower:
            headers[lower[key]] += ", " + value
        else:
            lower[key] = name
            headers[name] = value
    return start, headers


def hdr(headers, name):
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def name_addr_uri(value):
    """'"Bob" <sip:b@h:5060>;tag=x' -> '<sip:b@h:5060>'; 'sip:b@h;tag=x' -> '<sip:b@h>'"""
    if not value:
        return value
    m = re.search(r"<([^>]*)>", value)
    if m:
        return "<%s>" % m.group(1)
    return "<%s>" % value.split(";", 1)[0].strip()


def split_call_args(rest):
    """'sip:x@h X-Priority: 5 X-Foo: a b' -> ('sip:x@h', [('X-Priority','5'),('X-Foo','a b')])"""
    toks = rest.split()
    if not toks:
        return None, []
    uri = toks[0]
    headers = []
    name_re = re.compile(r"^[A-Za-z][A-Za-z0-9_.!%*+`'~-]*:$")
    cur = None
    for tok in toks[1:]:
        if name_re.match(tok):
            cur = [tok[:-1], []]
            headers.append(cur)
        elif cur is None and ":" in tok and name_re.match(tok.split(":", 1)[0] + ":") \
                and not tok.lower().startswith(("sip:", "sips:", "tel:")):
            # 'X-Priority:5' written without a space
            n, v = tok.split(":", 1)
            cur = [n, [v] if v else []]
            headers.append(cur)
        elif cur is not None:
            cur[1].append(tok)
        else:
            raise ValueError("unexpected token %r (headers must look like 'Name: value')" % tok)
    return uri, [(n, " ".join(v)) for n, v in headers]


def wav_finalised(path):
    """True when a RIFF/WAVE file's header sizes match its length."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return True   # nothing to wait for
    if len(head) < 12 or head[:4] != b"RIFF":
        return False
    # pjmedia writes 0 as the RIFF size until the writer is closed.
    return int.from_bytes(head[4:8], "little") + 8 == size


class UA:
    def __init__(self, args):
        self.args = args
        self.behaviour = args.behaviour
        self.ep = None
        self.transport_id = None
        self.port = None
        self.local_acc = None
        self.reg_acc = None
        self.calls = {}        # our call number -> MyCall
        self.next_call = 1
        self.timers = []       # (deadline, fn)
        self.to_drop = []      # call numbers to forget after the callback returns
        self.unregistering = False
        self.stop = False
        self.clock_rate = 16000

    # ----------------------------------------------------------------- setup
    def start(self):
        a = self.args
        ep = MyEndpoint()
        self.ep = ep
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 4
        cfg.uaConfig.userAgent = "acd-interop-ua/%s" % a.name
        cfg.uaConfig.stunIgnoreFailure = True
        cfg.uaConfig.natTypeInSdp = 0
        cfg.logConfig.consoleLevel = 0
        if a.log_file:
            cfg.logConfig.filename = a.log_file
            cfg.logConfig.level = a.log_level
            cfg.logConfig.msgLogging = True
        else:
            cfg.logConfig.level = 0
            cfg.logConfig.msgLogging = False
        cfg.medConfig.noVad = True
        self.clock_rate = cfg.medConfig.clockRate or 16000
        ep.libInit(cfg)
        if a.codecs:
            self.set_codecs(a.codecs)

        tcfg = pj.TransportConfig()
        tcfg.port = a.port
        tcfg.boundAddress = "127.0.0.1"
        ttype = pj.PJSIP_TRANSPORT_TCP if a.transport == "tcp" else pj.PJSIP_TRANSPORT_UDP
        self.transport_id = ep.transportCreate(ttype, tcfg)
        ep.libStart()
        ep.audDevManager().setNullDev()

        info = ep.transportGetInfo(self.transport_id)
        self.port = int(info.localName.rsplit(":", 1)[1])

        # Local account (no registration): identity sip:NAME@127.0.0.1:PORT.
        self.local_acc = MyAccount(self, "local")
        self.local_acc.create(self._acc_config("sip:%s@127.0.0.1:%d" % (a.name, self.port), None), True)

        if a.registrar:
            reg_uri = "sip:%s" % a.registrar
            if a.transport == "tcp":
                reg_uri += ";transport=tcp"
            acfg = self._acc_config("sip:%s@%s" % (a.user, a.registrar), reg_uri)
            self.reg_acc = MyAccount(self, "reg")
            self.reg_acc.create(acfg, True)

        emit("ready", port=self.port, transport=a.transport)

    def set_codecs(self, spec):
        want = [c.strip().lower() for c in spec.split(",") if c.strip()]
        found = set()
        for ci in self.ep.codecEnum2():
            cid = ci.codecId.lower()
            prio = 0
            for i, w in enumerate(want):
                if cid == w or cid.startswith(w + "/"):
                    prio = 250 - i
                    found.add(w)
                    break
            self.ep.codecSetPriority(ci.codecId, prio)
        missing = [w for w in want if w not in found]
        if missing:
            raise ValueError("--codecs: unknown codec(s) %s" % ", ".join(missing))

    def _acc_config(self, id_uri, registrar):
        a = self.args
        acfg = pj.AccountConfig()
        acfg.idUri = id_uri
        acfg.sipConfig.transportId = self.transport_id
        nat = acfg.natConfig
        nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.iceEnabled = False
        nat.turnEnabled = False
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sdpNatRewriteUse = 0
        nat.sipOutboundUse = 0
        nat.udpKaIntervalSec = 0
        # Don't send a re-INVITE/UPDATE after answer to "lock" a single codec.
        acfg.mediaConfig.lockCodecEnabled = False
        mt = acfg.mediaConfig.transportConfig
        mt.boundAddress = "127.0.0.1"
        # Above acd's default RTP range (20000-30000): a daemon on this
        # machine holding many of those ports (a load series) made pjsua's
        # random pick fail with "Address already in use" at make_call, or
        # refuse an incoming INVITE before the script saw it.
        mt.port = 30000
        mt.portRange = 10000
        mt.randomizePort = True
        if registrar:
            acfg.regConfig.registrarUri = registrar
            acfg.regConfig.timeoutSec = a.expires
            acfg.regConfig.retryIntervalSec = 0     # no automatic retries
            acfg.regConfig.firstRetryIntervalSec = 0
            acfg.regConfig.unregWaitMsec = 1000
            acfg.regConfig.dropCallsOnFail = False
            acfg.regConfig.registerOnAdd = True
            cred = pj.AuthCredInfo("digest", "*", a.user, 0, a.password or "")
            acfg.sipConfig.authCreds.append(cred)
        else:
            acfg.regConfig.registerOnAdd = False
            if a.auth_user:
                # A trunk that answers digest challenges without registering.
                cred = pj.AuthCredInfo("digest", "*", a.auth_user, 0, a.auth_password or "")
                acfg.sipConfig.authCreds.append(cred)
        return acfg

    def out_account(self):
        return self.reg_acc if self.reg_acc is not None else self.local_acc

    # ----------------------------------------------------------------- calls
    def new_call_no(self):
        n = self.next_call
        self.next_call += 1
        return n

    def on_incoming(self, acc, prm):
        n = self.new_call_no()
        call = MyCall(self, acc, n, prm.callId, incoming=True)
        self.calls[n] = call
        start, headers = parse_sip_message(prm.rdata.wholeMsg)
        parts = start.split()
        ruri = parts[1] if len(parts) >= 2 else None
        try:
            remote = call.getInfo().remoteUri
        except pj.Error:
            remote = None
        from_hdr = hdr(headers, "From")
        emit("incoming", call=n,
             **{"from": name_addr_uri(from_hdr),
                "from_header": from_hdr,
                "remote_uri": remote,
                "to": hdr(headers, "To"),
                "ruri": ruri,
                "call_id": hdr(headers, "Call-ID"),
                "src": prm.rdata.srcAddress,
                "headers": headers})
        self.apply_behaviour(call)

    def apply_behaviour(self, call):
        b = self.behaviour
        code = BEHAVIOURS[b]
        try:
            if code is None or code == 200:
                op = pj.CallOpParam()
                op.statusCode = 180
                call.answer(op)
                emit("ringing", call=call.no)
                if code == 200:
                    self.timers.append((time.monotonic() + self.args.answer_delay,
                                        lambda c=call: self.answer_call(c, 200)))
            else:
                emit("rejected", call=call.no, code=code)
                op = pj.CallOpParam()
                op.statusCode = code
                call.hangup(op)
        except pj.Error as e:
            emit("error", message="behaviour %s failed: %s" % (b, e.info()), call=call.no)

    def answer_call(self, call, code=200):
        if call.no not in self.calls or call.disconnected:
            return
        try:
            ci = call.getInfo()
            if ci.state >= pj.PJSIP_INV_STATE_CONNECTING:
                return
            op = pj.CallOpParam()
            op.statusCode = code
            if code >= 300:
                call.hangup(op)
            else:
                call.answer(op)
        except pj.Error as e:
            emit("error", message="answer failed: %s" % e.info(), call=call.no)

    def make_call(self, rest):
        try:
            uri, headers = split_call_args(rest)
        except ValueError as e:
            emit("error", message=str(e))
            return
        if not uri:
            emit("error", message="usage: call <sip-uri> [Header: value]...")
            return
        if self.args.transport == "tcp" and "transport=" not in uri.lower():
            uri += ";transport=tcp"
        n = self.new_call_no()
        call = MyCall(self, self.out_account(), n, pj.PJSUA_INVALID_ID, incoming=False)
        op = pj.CallOpParam(True)
        op.opt.audioCount = 1
        op.opt.videoCount = 0
        for name, value in headers:
            h = pj.SipHeader()
            h.hName = name
            h.hValue = value
            op.txOption.headers.append(h)
        self.calls[n] = call
        try:
            call.makeCall(uri, op)
        except pj.Error as e:
            self.calls.pop(n, None)
            emit("error", message="call failed: %s" % e.info(), call=n, status=e.status)
            return
        emit("calling", call=n, uri=uri)

    def select_calls(self, sel):
        if sel is None or sel == "all":
            return list(self.calls.values())
        try:
            n = int(sel)
        except ValueError:
            emit("error", message="bad call number %r" % sel)
            return []
        if n not in self.calls:
            emit("error", message="no such call %d" % n)
            return []
        return [self.calls[n]]

    def hangup(self, sel=None, code=None):
        for call in self.select_calls(sel):
            if call.disconnected:
                continue
            op = pj.CallOpParam()
            if code:
                op.statusCode = code
            try:
                call.hangup(op)
            except pj.Error as e:
                emit("error", message="hangup failed: %s" % e.info(), call=call.no)

    def call_state(self, call):
        try:
            ci = call.getInfo()
        except pj.Error as e:
            emit("error", message="getInfo failed: %s" % e.info(), call=call.no)
            return
        st = ci.state
        if st == pj.PJSIP_INV_STATE_EARLY and not call.incoming:
            emit("early", call=call.no, code=ci.lastStatusCode, reason=ci.lastReason)
        elif st == pj.PJSIP_INV_STATE_CONFIRMED:
            call.was_answered = True
            emit("answered", call=call.no)
        elif st == pj.PJSIP_INV_STATE_DISCONNECTED:
            if call.disconnected:
                return
            call.disconnected = True
            d = ci.connectDuration
            t = ci.totalDuration
            emit("disconnected", call=call.no, code=ci.lastStatusCode,
                 reason=ci.lastReason,
                 duration_ms=d.sec * 1000 + d.msec,
                 total_ms=t.sec * 1000 + t.msec,
                 answered=call.was_answered)
            self.to_drop.append(call.no)

    # ----------------------------------------------------------------- media
    MEDIA_STATUS = {
        pj.PJSUA_CALL_MEDIA_NONE: "none",
        pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
        pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold",
        pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
        pj.PJSUA_CALL_MEDIA_ERROR: "error",
    }

    @staticmethod
    def audio_index(ci):
        for i, m in enumerate(ci.media):
            if m.type == pj.PJMEDIA_TYPE_AUDIO:
                return i, m
        return None, None

    def media_state(self, call):
        if call.disconnected:
            return
        ci = call.getInfo()
        idx, mi = self.audio_index(ci)
        if idx is None:
            return
        remote = codec = rate = None
        try:
            si = call.getStreamInfo(idx)
            remote = si.remoteRtpAddress or None
            codec = si.codecName or None
            rate = si.codecClockRate or None
        except pj.Error:
            pass
        emit("media", call=call.no, status=self.MEDIA_STATUS.get(mi.status, str(mi.status)),
             remote_rtp=remote, codec=codec, clock_rate=rate)
        if mi.audioConfSlot < 0:
            call.aud_med = None   # no audio now; later play/record queue
            return
        try:
            am = call.getAudioMedia(idx)
        except pj.Error as e:
            emit("error", message="getAudioMedia failed: %s" % e.info(), call=call.no)
            return
        call.aud_med = am
        # The conference slot may have changed (re-INVITE): reconnect.
        try:
            if call.player is not None:
                call.player["obj"].startTransmit(am)
            if call.recorder is not None:
                am.startTransmit(call.recorder["obj"])
        except pj.Error as e:
            emit("error", message="reconnect media failed: %s" % e.info(), call=call.no)
        pending, call.pending = call.pending, []
        for fn in pending:
            fn()

    def media_call(self, sel, usage):
        if sel is None:
            emit("error", message="usage: " + usage)
            return None
        calls = self.select_calls(sel)
        if len(calls) != 1:
            if sel == "all":
                emit("error", message="usage: " + usage)
            return None
        call = calls[0]
        if call.disconnected:
            emit("error", message="call %d is disconnected" % call.no, call=call.no)
            return None
        return call

    def when_media(self, call, fn):
        if call.aud_med is not None:
            fn()
        else:
            call.pending.append(fn)

    def make_tone(self, freq, amplitude, secs=4):
        rate = self.clock_rate
        n = rate * secs
        cycles = max(1, int(round(freq * secs)))
        peak = amplitude * 32767.0
        samples = array.array("h", (int(round(peak * math.sin(2.0 * math.pi * cycles * i / n)))
                                    for i in range(n)))
        if sys.byteorder != "little":
            samples.byteswap()
        fd, path = tempfile.mkstemp(prefix="ua-tone-%d-" % int(freq), suffix=".wav")
        os.close(fd)
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(samples.tobytes())
        return path, cycles / float(secs), rate

    def start_play(self, call, path, tone=None):
        """Connect a looping player for `path` to the call (media is up)."""
        if call.disconnected or call.aud_med is None:
            return
        self.stop_play(call, quiet=True)
        try:
            player = pj.AudioMediaPlayer()
            player.createPlayer(path, 0)   # 0 = loop forever
            player.startTransmit(call.aud_med)
        except pj.Error as e:
            player = None
            if tone is not None:
                self.remove_tmp(path)
            emit("error", message="play %s failed: %s" % (path, e.info()), call=call.no)
            return
        call.player = {"obj": player, "file": path, "tmp": tone is not None}
        if tone is None:
            emit("playing", call=call.no, file=path)
        else:
            emit("playing", call=call.no, file=path, **tone)

    @staticmethod
    def remove_tmp(path):
        try:
            os.unlink(path)
        except OSError:
            pass

    def stop_play(self, call, quiet=False):
        p = call.player
        call.player = None
        if p is None:
            return None
        try:
            if call.aud_med is not None and not call.disconnected:
                p["obj"].stopTransmit(call.aud_med)
        except pj.Error:
            pass
        p["obj"] = None   # destroys the pjsua player (closes the file)
        if p["tmp"]:
            self.remove_tmp(p["file"])
        if not quiet:
            emit("stopped", call=call.no, file=p["file"])
        return p["file"]

    def start_record(self, call, path):
        if call.disconnected or call.aud_med is None:
            return
        self.stop_record(call)
        try:
            rec = pj.AudioMediaRecorder()
            rec.createRecorder(path)
            call.aud_med.startTransmit(rec)
        except pj.Error as e:
            rec = None
            emit("error", message="record %s failed: %s" % (path, e.info()), call=call.no)
            return
        call.recorder = {"obj": rec, "file": path}
        emit("recording", call=call.no, file=path, rate=self.clock_rate)

    def stop_record(self, call):
        r = call.recorder
        call.recorder = None
        if r is None:
            return False
        try:
            if call.aud_med is not None and not call.disconnected:
                call.aud_med.stopTransmit(r["obj"])
        except pj.Error:
            pass
        r["obj"] = None   # destroys the pjsua recorder...
        gc.collect()
        # ...but the conference bridge (pjmedia >= 2.14) removes the port on
        # its next clock tick, and only then is the WAV header written.
        deadline = time.monotonic() + 2.0
        while not wav_finalised(r["file"]) and time.monotonic() < deadline:
            self.ep.libHandleEvents(5)
        try:
            size = os.path.getsize(r["file"])
        except OSError:
            size = 0
        emit("recorded", call=call.no, file=r["file"], bytes=size)
        return True

    def drop_media(self, call):
        """Release a call's players/recorders (before the Call object goes)."""
        for _ in call.pending:
            emit("error", message="call ended before its media was up; "
                 "queued play/tone/record dropped", call=call.no)
        call.pending = []
        self.stop_play(call, quiet=True)
        self.stop_record(call)
        call.aud_med = None

    def media_command(self, verb, args):
        if verb == "play":
            usage = "play <call> <wav-path>"
            if len(args) != 2:
                emit("error", message="usage: " + usage)
                return
            call = self.media_call(args[0], usage)
            if call is None:
                return
            path = args[1]
            if not os.path.isfile(path):
                emit("error", message="no such file %r" % path, call=call.no)
                return
            self.when_media(call, lambda: self.start_play(call, path))
        elif verb == "tone":
            usage = "tone <call> <freq-hz> [amplitude]"
            if len(args) not in (2, 3):
                emit("error", message="usage: " + usage)
                return
            call = self.media_call(args[0], usage)
            if call is None:
                return
            try:
                freq = float(args[1])
                amp = float(args[2]) if len(args) > 2 else 0.5
            except ValueError:
                emit("error", message="usage: " + usage)
                return
            if not (0 < freq < self.clock_rate / 2.0) or not (0 < amp <= 1.0):
                emit("error", message="tone: need 0 < freq < %d and 0 < amplitude <= 1"
                     % (self.clock_rate // 2), call=call.no)
                return
            path, actual, rate = self.make_tone(freq, amp)
            tone = {"tone": int(freq) if freq == int(freq) else freq,
                    "tone_hz": actual, "amplitude": amp, "rate": rate}

            def go():
                if call.disconnected:
                    self.remove_tmp(path)
                else:
                    self.start_play(call, path, tone)
            if call.aud_med is None:
                call.tmp_files.append(path)
            self.when_media(call, go)
        elif verb == "stopplay":
            usage = "stopplay <call>"
            call = self.media_call(args[0] if len(args) == 1 else None, usage)
            if call is None:
                return
            call.pending = [fn for fn in call.pending if getattr(fn, "kind", None) == "record"]
            if self.stop_play(call) is None:
                emit("stopped", call=call.no, file=None)
        elif verb == "record":
            usage = "record <call> <wav-path>"
            if len(args) != 2:
                emit("error", message="usage: " + usage)
                return
            call = self.media_call(args[0], usage)
            if call is None:
                return
            path = args[1]
            if not path.lower().endswith(".wav"):
                emit("error", message="record: path must end in .wav", call=call.no)
                return

            def go():
                self.start_record(call, path)
            go.kind = "record"
            go.file = path
            self.when_media(call, go)
        elif verb == "stoprecord":
            usage = "stoprecord <call>"
            if len(args) != 1:
                emit("error", message="usage: " + usage)
                return
            calls = self.select_calls(args[0])
            if len(calls) != 1:
                return
            call = calls[0]
            queued = [fn for fn in call.pending if getattr(fn, "kind", None) == "record"]
            if queued:
                call.pending = [fn for fn in call.pending if fn not in queued]
                emit("recorded", call=call.no, file=queued[-1].file, bytes=0)
            elif not self.stop_record(call):
                emit("error", message="call %d is not recording" % call.no, call=call.no)
        elif verb == "stats":
            usage = "stats <call>"
            if len(args) != 1:
                emit("error", message="usage: " + usage)
                return
            calls = self.select_calls(args[0])
            if len(calls) != 1:
                return
            call = calls[0]
            try:
                idx, _ = self.audio_index(call.getInfo())
                if idx is None:
                    raise ValueError("no audio media")
                st = call.getStreamStat(idx).rtcp
                emit("rtp_stats", call=call.no,
                     rx_packets=st.rxStat.pkt, tx_packets=st.txStat.pkt,
                     rx_bytes=st.rxStat.bytes, tx_bytes=st.txStat.bytes,
                     rx_loss=st.rxStat.loss)
            except pj.Error as e:
                emit("error", message="stats failed: %s" % e.info(), call=call.no)
            except ValueError as e:
                emit("error", message="stats failed: %s" % e, call=call.no)

    # ----------------------------------------------------------- registration
    def reg_state(self, acc, prm):
        code = prm.code
        if self.unregistering or (prm.expiration == 0 and 200 <= code < 300 and acc.was_registered):
            if 200 <= code < 300:
                self.unregistering = False
                acc.was_registered = False
                emit("unregistered", code=code)
                return
            self.unregistering = False
            emit("unregister_failed", code=code, reason=prm.reason)
            return
        if 200 <= code < 300:
            acc.was_registered = True
            emit("registered", code=code, expires=prm.expiration)
        else:
            emit("register_failed", code=code, reason=prm.reason)

    def register(self, on):
        if self.reg_acc is None:
            emit("error", message="no registrar configured")
            return
        try:
            if not on:
                self.unregistering = True
            self.reg_acc.setRegistration(on)
        except pj.Error as e:
            self.unregistering = False
            emit("error", message="setRegistration(%s) failed: %s" % (on, e.info()))

    # ------------------------------------------------------------- commands
    def command(self, line):
        line = line.strip()
        if not line or line.startswith("#"):
            return
        verb, _, rest = line.partition(" ")
        verb = verb.lower()
        rest = rest.strip()
        args = rest.split()
        if verb == "call":
            self.make_call(rest)
        elif verb == "hangup":
            code = int(args[1]) if len(args) > 1 else None
            self.hangup(args[0] if args else None, code)
        elif verb == "answer":
            code = int(args[1]) if len(args) > 1 else 200
            for call in self.select_calls(args[0] if args else None):
                if call.incoming:
                    self.answer_call(call, code)
        elif verb in ("hold", "unhold"):
            # re-INVITE: a=sendonly (hold) or a=sendrecv again (unhold)
            for call in self.select_calls(args[0] if args else None):
                try:
                    op = pj.CallOpParam(True)
                    if verb == "hold":
                        call.setHold(op)
                    else:
                        op.opt.flag = pj.PJSUA_CALL_UNHOLD
                        call.reinvite(op)
                    emit(verb + "_sent", call=call.no)
                except pj.Error as e:
                    emit("error", message="%s failed: %s" % (verb, e.info()), call=call.no)
        elif verb == "dtmf":
            if len(args) != 2:
                emit("error", message="usage: dtmf <call> <digits>")
                return
            for call in self.select_calls(args[0]):
                try:
                    call.dialDtmf(args[1])
                except pj.Error as e:
                    emit("error", message="dtmf failed: %s" % e.info(), call=call.no)
        elif verb == "xfer":
            if len(args) != 2:
                emit("error", message="usage: xfer <call> <sip-uri>")
                return
            for call in self.select_calls(args[0]):
                try:
                    call.xfer(args[1], pj.CallOpParam(True))
                    emit("xfer_sent", call=call.no, uri=args[1])
                except pj.Error as e:
                    emit("error", message="xfer failed: %s" % e.info(), call=call.no)
        elif verb == "xfer_replaces":
            # Attended transfer: REFER on <call> whose Refer-To carries
            # Replaces=<other call's dialog> (pjsua's xferReplaces).
            if len(args) != 2:
                emit("error", message="usage: xfer_replaces <call> <other-call>")
                return
            calls = {c.no: c for c in self.select_calls("all")}
            try:
                call, other = calls[int(args[0])], calls[int(args[1])]
            except (KeyError, ValueError):
                emit("error", message="no such calls %r" % rest)
                return
            try:
                call.xferReplaces(other, pj.CallOpParam(True))
                emit("xfer_sent", call=call.no, replaces=other.no)
            except pj.Error as e:
                emit("error", message="xfer_replaces failed: %s" % e.info(), call=call.no)
        elif verb == "register":
            self.register(True)
        elif verb == "unregister":
            self.register(False)
        elif verb == "behaviour" or verb == "behavior":
            if rest not in BEHAVIOURS:
                emit("error", message="unknown behaviour %r" % rest)
            else:
                self.behaviour = rest
                emit("behaviour", behaviour=rest)
        elif verb in ("play", "tone", "stopplay", "record", "stoprecord", "stats"):
            self.media_command(verb, args)
        elif verb in ("quit", "exit"):
            self.stop = True
        else:
            emit("error", message="unknown command %r" % line)

    # ------------------------------------------------------------ main loop
    def pump(self):
        self.ep.libHandleEvents(10)
        if self.to_drop:
            for n in self.to_drop:
                call = self.calls.pop(n, None)
                if call is not None:
                    self.forget_call(call)
            self.to_drop = []
        if self.timers:
            now = time.monotonic()
            due = [t for t in self.timers if t[0] <= now]
            self.timers = [t for t in self.timers if t[0] > now]
            for _, fn in due:
                fn()

    def forget_call(self, call):
        try:
            self.drop_media(call)
        except Exception as e:
            emit("error", message="drop media: %r" % e, call=call.no)
        for path in call.tmp_files:
            self.remove_tmp(path)
        call.tmp_files = []

    def run(self, cmdq):
        while not self.stop:
            self.pump()
            while True:
                try:
                    line = cmdq.get_nowait()
                except queue.Empty:
                    break
                if line is None:
                    self.stop = True
                    break
                try:
                    self.command(line)
                except Exception as e:  # keep going on bad input
                    emit("error", message="command %r failed: %r" % (line.strip(), e))
                if self.stop:
                    break

    def shutdown(self):
        ep = self.ep
        if ep is None:
            return
        self.timers = []
        try:
            if self.calls:
                ep.hangupAllCalls()
                deadline = time.monotonic() + 2.0
                while self.calls and time.monotonic() < deadline:
                    self.pump()
        except Exception as e:
            emit("error", message="shutdown hangup: %r" % e)
        # Unregister (like a real phone going away) and wait for the answer,
        # so libDestroy() can skip its fixed 1 s network grace period.
        if self.reg_acc is not None and self.reg_acc.was_registered and not self.unregistering:
            try:
                self.register(False)
                deadline = time.monotonic() + 1.5
                while self.unregistering and time.monotonic() < deadline:
                    self.pump()
            except Exception as e:
                emit("error", message="shutdown unregister: %r" % e)
        # Drop every Python-side pjsua2 object before libDestroy(): players
        # and recorders first, then the calls.
        for call in list(self.calls.values()):
            self.forget_call(call)
        self.calls.clear()
        self.to_drop = []
        for acc in (self.reg_acc, self.local_acc):
            if acc is not None:
                try:
                    acc.shutdown()
                except Exception:
                    pass
        self.reg_acc = None
        self.local_acc = None
        gc.collect()
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:
            ep.libHandleEvents(10)
        # NO_NETWORK: don't sleep another second waiting for network
        # shutdown; calls and registration have been dealt with above.
        ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
        self.ep = None
        del ep
        gc.collect()


class MyEndpoint(pj.Endpoint):
    def onRejectedIncomingCall(self, prm):
        # pjsua refused an incoming INVITE itself (e.g. more than 4 calls,
        # no matching account, bad SDP); no Call object exists for it.
        try:
            try:
                _, headers = parse_sip_message(prm.rdata.wholeMsg)
                call_id = hdr(headers, "Call-ID")
            except Exception:
                call_id = None
            emit("rejected_incoming", code=prm.statusCode, reason=prm.reason,
                 call_id=call_id, **{"from": prm.remoteInfo, "to": prm.localInfo})
        except Exception as e:
            emit("error", message="onRejectedIncomingCall: %r" % e)


class MyAccount(pj.Account):
    def __init__(self, ua, kind):
        pj.Account.__init__(self)
        self.ua = ua
        self.kind = kind
        self.was_registered = False

    def onIncomingCall(self, prm):
        try:
            self.ua.on_incoming(self, prm)
        except Exception as e:
            emit("error", message="onIncomingCall: %r" % e)

    def onRegState(self, prm):
        try:
            self.ua.reg_state(self, prm)
        except Exception as e:
            emit("error", message="onRegState: %r" % e)


class MyCall(pj.Call):
    def __init__(self, ua, acc, no, call_id, incoming):
        pj.Call.__init__(self, acc, call_id)
        self.ua = ua
        self.no = no
        self.incoming = incoming
        self.disconnected = False
        self.was_answered = False
        self.aud_med = None     # pj.AudioMedia once the call's audio is up
        self.player = None      # {"obj": AudioMediaPlayer, "file", "tmp"}
        self.recorder = None    # {"obj": AudioMediaRecorder, "file"}
        self.pending = []       # play/tone/record waiting for media
        self.tmp_files = []     # tone files of queued tones

    def onCallState(self, prm):
        try:
            self.ua.call_state(self)
        except Exception as e:
            emit("error", message="onCallState: %r" % e, call=self.no)

    def onCallMediaState(self, prm):
        try:
            self.ua.media_state(self)
        except Exception as e:
            emit("error", message="onCallMediaState: %r" % e, call=self.no)

    def onDtmfDigit(self, prm):
        emit("dtmf", call=self.no, digit=prm.digit)

    def onCallTransferStatus(self, prm):
        # A 4xx to the REFER itself comes here too, as a final status.
        emit("xfer_status", call=self.no, code=prm.statusCode, reason=prm.reason,
             final=bool(prm.finalNotify))


def stdin_reader(q):
    try:
        for line in sys.stdin:
            q.put(line)
    except Exception:
        pass
    q.put(None)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True, help="0 = any")
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    ap.add_argument("--registrar", help="HOST:PORT")
    ap.add_argument("--auth-user", help="digest user for outgoing calls without registering (a trunk)")
    ap.add_argument("--auth-password")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--expires", type=int, default=300)
    ap.add_argument("--behaviour", "--behavior", dest="behaviour",
                    choices=sorted(BEHAVIOURS), default="answer")
    ap.add_argument("--answer-delay", type=float, default=0.0)
    ap.add_argument("--log-file", help="write pjsip log (with SIP messages) here")
    ap.add_argument("--log-level", type=int, default=5)
    ap.add_argument("--codecs", help="comma-separated codec ids to keep, in order (e.g. PCMU,PCMA)")
    args = ap.parse_args()
    if args.registrar and not args.user:
        ap.error("--registrar needs --user")

    ua = UA(args)

    def on_signal(signum, frame):
        ua.stop = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    cmdq = queue.Queue()
    t = threading.Thread(target=stdin_reader, args=(cmdq,), daemon=True)
    t.start()

    rc = 0
    try:
        ua.start()
        ua.run(cmdq)
    except pj.Error as e:
        emit("error", message="pjsua2: %s" % e.info())
        rc = 2
    except Exception as e:
        emit("error", message="fatal: %r" % e)
        rc = 2
    finally:
        try:
            ua.shutdown()
        except Exception as e:
            emit("error", message="shutdown: %r" % e)
            rc = rc or 3
    emit("exit", code=rc)
    _out.flush()
    # The stdin reader thread may still be blocked in read(); don't wait for it.
    os._exit(rc)


if __name__ == "__main__":
    main()
