#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/seed-*) from real-world shaped
messages: SIP as pjsua, baresip, Linphone, Yealink/Polycom phones and an
Asterisk trunk send it; SDP offers from the same; Authorization values from
the RFC examples, pjsip, and ones computed for the nonce the digest target's
store issues (acd::fuzzing::DIGEST_SEED), so verify's success path is reached.
Re-run after changing a message; the fuzzer's own finds are added by
`cargo fuzz cmin`."""
import hashlib, os, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
NONCE = "0000000000000000149406d8fc0e8e6b67094cea8ca40db1"  # NonceStore::new(30 s, 1).issue(Time::ZERO)

def crlf(s):
    return s.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"

def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

# --- SDP -----------------------------------------------------------------
SDP = {
"pjsua": """v=0
o=- 3917 3917 IN IP4 127.0.0.1
s=pjmedia
b=AS:84
t=0 0
a=X-nat:0
m=audio 20012 RTP/AVP 96 9 8 0 101
c=IN IP4 127.0.0.1
b=TIAS:64000
a=rtcp:20013 IN IP4 127.0.0.1
a=sendrecv
a=rtpmap:96 speex/16000
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
""",
"baresip": """v=0
o=- 1797412311 1462829457 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
m=audio 10010 RTP/AVP 96 9 0 8 101
b=AS:64
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:1278340282 cname:bfd2f1ab-8b6c-4e2c
a=rtcp-rsize
a=ptime:20
""",
"linphone": """v=0
o=alice 2107 3483 IN IP4 10.0.0.12
s=Talk
c=IN IP4 10.0.0.12
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
""",
"asterisk_trunk": """v=0
o=root 1580352012 1580352012 IN IP4 198.51.100.10
s=Asterisk PBX 18.10.0
c=IN IP4 198.51.100.10
t=0 0
m=audio 16384 RTP/AVP 8 0 3 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
""",
"yealink": """v=0
o=- 20002 20002 IN IP4 192.168.10.31
s=SDP data
c=IN IP4 192.168.10.31
t=0 0
m=audio 11796 RTP/AVP 0 8 18 9 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:9 G722/8000
a=fmtp:101 0-15
a=rtpmap:101 telephone-event/8000
a=ptime:20
a=sendrecv
""",
"polycom_srtp": """v=0
o=- 1649856271 1649856271 IN IP4 10.1.2.3
s=Polycom IP Phone
c=IN IP4 10.1.2.3
t=0 0
a=sendrecv
m=audio 2230 RTP/SAVP 9 0 8 127
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:127 telephone-event/8000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:Yd0cJj1bTQq9i8fbD5E1lsUvp8ZH0DZfVlK6hrd1
""",
"hold_sendonly": """v=0
o=- 3917 3918 IN IP4 127.0.0.1
s=pjmedia
t=0 0
m=audio 20012 RTP/AVP 0 101
c=IN IP4 127.0.0.1
a=sendonly
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
""",
"hold_rfc2543": """v=0
o=x 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 4000 RTP/AVP 8
a=inactive
""",
"ipv6": """v=0
o=- 42 42 IN IP6 2001:db8::5
s=-
c=IN IP6 2001:db8::5
t=0 0
m=audio 30002 RTP/AVP 8 0 101
a=rtpmap:101 telephone-event/8000
a=recvonly
""",
"video_then_audio": """v=0
o=- 1 1 IN IP4 10.0.0.9
s=-
t=0 0
m=video 9078 RTP/AVP 96
c=IN IP4 10.0.0.9
a=rtpmap:96 VP8/90000
m=audio 7078 RTP/AVP 0
c=IN IP4 10.0.0.9
""",
"no_g711": """v=0
o=x 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 9 96
a=rtpmap:9 G722/8000
a=rtpmap:96 opus/48000/2
""",
"webrtc_ice": """v=0
o=mozilla...THIS_IS_SDPARTA-99.0 7134553548164337423 0 IN IP4 0.0.0.0
s=-
t=0 0
a=fingerprint:sha-256 5B:E2:1A:5E:9F:3C:54:51:F6:2C:AA:1E:6C:3E:8E:1F:1A:8F:56:4B:64:2C:7B:86:DF:6D:91:58:2A:E5:AE:3B
a=group:BUNDLE 0
a=ice-options:trickle
a=msid-semantic:WMS *
m=audio 51834 UDP/TLS/RTP/SAVPF 109 9 0 8 101
c=IN IP4 203.0.113.77
a=candidate:0 1 UDP 2122252543 192.168.1.50 51834 typ host
a=candidate:1 1 UDP 1686052863 203.0.113.77 51834 typ srflx raddr 192.168.1.50 rport 51834
a=sendrecv
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1
a=fmtp:101 0-15
a=ice-pwd:b6e5fb8b3c1a4c34a6b9d4b4f2b3e0c7
a=ice-ufrag:3e0c7b2a
a=mid:0
a=rtcp-mux
a=rtpmap:109 opus/48000/2
a=rtpmap:9 G722/8000/1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000/1
a=setup:actpass
""",
"acd_answer": """v=0
o=acd 7 8 IN IP4 203.0.113.1
s=acd
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""",
"static_only_lf": "v=0\no=x 1 1 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5/127\nt=0 0\nm=audio 4000/2 RTP/AVP 0 8\n",
}
for name, text in SDP.items():
    data = text.encode() if name.endswith("_lf") else crlf(text)
    write("sdp", name, data)

# --- digest --------------------------------------------------------------
def md5(s):
    return hashlib.md5(s.encode()).hexdigest()
def sha256(s):
    return hashlib.sha256(s.encode()).hexdigest()

def pjsip(nonce, nc, h=md5, alg="MD5", qop=True, realm="acd", user="alice", uri="sip:127.0.0.1:5070", pw="secret"):
    ha1 = h(f"{user}:{realm}:{pw}")
    ha2 = h(f"REGISTER:{uri}")
    if qop:
        ncs = f"{nc:08x}"
        resp = h(f"{ha1}:{nonce}:{ncs}:xyz:auth:{ha2}")
        return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
                f'response="{resp}", algorithm={alg}, cnonce="xyz", qop=auth, nc={ncs}')
    resp = h(f"{ha1}:{nonce}:{ha2}")
    return f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{resp}", algorithm={alg}'

DIGEST = {
"rfc2617": '''Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41"''',
"rfc7616_sha256": '''Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"''',
"pjsip_abc": 'Digest username="alice", realm="acd", nonce="abc", uri="sip:127.0.0.1:5070", '
             'response="0123456789abcdef0123456789abcdef", algorithm=MD5, cnonce="xyz", qop=auth, nc=00000001',
"edge_cases": 'digest USERNAME = "a,b \\"c\\"" ,Realm=acd,nonce=n1,URI="sip:x",response="ab",'
              'qop="auth",nc=0000000a,cnonce="c",userhash=false,algorithm=sha-256',
"issued_md5_qop": pjsip(NONCE, 1),
"issued_md5_nc_ff": pjsip(NONCE, 0xff),
"issued_md5_nc_zero": pjsip(NONCE, 0),
"issued_md5_no_qop": pjsip(NONCE, 1, qop=False),
"issued_sha256": pjsip(NONCE, 1, h=sha256, alg="SHA-256"),
"issued_wrong_password": pjsip(NONCE, 1, pw="wrong"),
"issued_wrong_realm": pjsip(NONCE, 1, realm="other"),
"stale_own_format": pjsip("00000000000003e8" + "0" * 32, 1),
"unknown_nonce": pjsip("feedface", 2),
"utf8_username": pjsip(NONCE, 3, user="Jürgen Müller"),
"linphone_sip_uri": 'Digest realm="acd", nonce="' + NONCE + '", algorithm=MD5, opaque="+GNywA==", '
                    'username="1001",  uri="sip:acd.example.com;transport=udp", '
                    'response="8d5a1e2cf7e0bcb36e5b8c4de2e6b9f0", cnonce="rW5hZ1cmYq1vS9oA", nc=00000001, qop=auth',
"basic": 'Basic YWxpY2U6c2VjcmV0',
"missing_username": 'Digest realm="r", nonce="n", uri="u", response="x"',
"qop_auth_int": 'Digest username="u", realm="r", nonce="n", uri="sip:x", response="ab", qop=auth-int, nc=1, cnonce=c',
"duplicate_realm": 'Digest username="u", realm="r", nonce="n", uri="sip:x", response="ab", Realm="x"',
"unterminated": 'Digest username="u", realm="r", nonce="n", uri="sip:x", response="ab", opaque="unterminated',
"md5_sess": 'Digest username="u", realm="r", nonce="n", uri="sip:x", response="ab", algorithm=MD5-sess',
}
for name, text in DIGEST.items():
    write("digest", name, text.encode())

# --- SIP -----------------------------------------------------------------
ISSUED_AUTH = pjsip(NONCE, 1, uri="sip:acd.example.com")
SIP = {
"register_pjsua": """REGISTER sip:acd.example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPj4d3e1b0c-2b6f-4a3e-9c2a-1d1a5f3b9e01
Max-Forwards: 70
From: <sip:1001@acd.example.com>;tag=7c2e1d2f-3a4b-4c5d-8e9f-0a1b2c3d4e5f
To: <sip:1001@acd.example.com>
Call-ID: 2b5c0e36-9f1e-4a6a-8d5e-3c7f1b2a9d40
CSeq: 12345 REGISTER
User-Agent: PJSUA v2.14 Linux-6.1/x86_64/glibc-2.36
Contact: <sip:1001@192.168.1.20:5060;ob>
Expires: 300
Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS
Content-Length:  0

""",
"register_auth": """REGISTER sip:acd.example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPj8f1e
Max-Forwards: 70
From: <sip:alice@acd.example.com>;tag=abc123
To: <sip:alice@acd.example.com>
Call-ID: reg-auth-1@192.168.1.20
CSeq: 12346 REGISTER
Contact: "Alice" <sip:alice@192.168.1.20:5060;ob>;expires=600, <sip:alice@10.0.0.1;transport=tcp>;q=0.5
Expires: 600
Authorization: """ + ISSUED_AUTH + """
Content-Length: 0

""",
"register_star": """REGISTER sip:acd.example.com SIP/2.0
Via: SIP/2.0/UDP [2001:db8::20]:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
From: <sip:1002@acd.example.com>;tag=456248
To: <sip:1002@acd.example.com>
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Contact: *
Expires: 0
Content-Length: 0

""",
"options_sipsak": """OPTIONS sip:acd.example.com SIP/2.0
Via: SIP/2.0/UDP 127.0.1.1:43277;branch=z9hG4bK.4a3c2b1d;rport;alias
From: sip:sipsak@127.0.1.1:43277;tag=6b1a3c0f
To: sip:acd.example.com
Call-ID: 1796831503@127.0.1.1
CSeq: 1 OPTIONS
Contact: sip:sipsak@127.0.1.1:43277
Content-Length: 0
Max-Forwards: 70
User-Agent: sipsak 0.9.8
Accept: text/plain

""",
"bye_in_dialog": """BYE sip:1001@192.168.1.20:5060;ob SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPjbye1
Max-Forwards: 70
From: <sip:1001@acd.example.com>;tag=caller-tag
To: <sip:support@acd.example.com>;tag=acd-tag-77
Call-ID: call-1@192.168.1.20
CSeq: 2 BYE
Content-Length: 0

""",
"cancel": """CANCEL sip:support@acd.example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPjinv1
Max-Forwards: 70
From: <sip:1001@acd.example.com>;tag=caller-tag
To: <sip:support@acd.example.com>
Call-ID: call-1@192.168.1.20
CSeq: 1 CANCEL
Content-Length: 0

""",
"ack": """ACK sip:support@acd.example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPjinv1
Max-Forwards: 70
From: <sip:1001@acd.example.com>;tag=caller-tag
To: <sip:support@acd.example.com>;tag=acd-tag-77
Call-ID: call-1@192.168.1.20
CSeq: 1 ACK
Content-Length: 0

""",
"response_200_invite": """SIP/2.0 200 OK
Via: SIP/2.0/UDP 203.0.113.1:5060;rport=5060;branch=z9hG4bKacd1;received=203.0.113.1
From: "acd" <sip:acd@203.0.113.1>;tag=acd-from
To: <sip:agent7@192.168.1.31>;tag=1410948204
Call-ID: acd-leg-3@203.0.113.1
CSeq: 1 INVITE
Contact: <sip:agent7@192.168.1.31:5060>
Supported: replaces, path, timer, eventlist
Allow: INVITE, ACK, OPTIONS, CANCEL, BYE, SUBSCRIBE, NOTIFY, INFO, REFER, UPDATE
Content-Type: application/sdp
Content-Length: {len}

{sdp}""",
"response_401": """SIP/2.0 401 Unauthorized
Via: SIP/2.0/UDP 192.168.1.20:5060;rport=5060;branch=z9hG4bKPj8f1e;received=192.0.2.7
From: <sip:alice@acd.example.com>;tag=abc123
To: <sip:alice@acd.example.com>;tag=acd-401
Call-ID: reg-auth-1@192.168.1.20
CSeq: 12345 REGISTER
WWW-Authenticate: Digest realm="acd", nonce="0000000000000000149406d8fc0e8e6b67094cea8ca40db1", algorithm=MD5, qop="auth"
Content-Length: 0

""",
"response_180": """SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKacd2
From: <sip:acd@203.0.113.1>;tag=acd-from
To: <sip:agent8@10.1.2.3>;tag=poly-1
Call-ID: acd-leg-4@203.0.113.1
CSeq: 1 INVITE
Contact: <sip:agent8@10.1.2.3:5060>
Content-Length: 0

""",
"compact_headers": """MESSAGE sip:queue@acd.example.com SIP/2.0
v: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKcompact
f: "Bob" <sip:bob@example.org>;tag=b1
t: <sip:queue@acd.example.com>
i: compact-1@10.0.0.2
CSeq: 3 MESSAGE
m: <sip:bob@10.0.0.2>
c: text/plain
l: 5
Max-Forwards: 69

hello""",
}
INVITES = {
"invite_pjsua": ("""INVITE sip:support@acd.example.com SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bKPjinv1
Max-Forwards: 70
From: "Caller" <sip:1001@acd.example.com>;tag=caller-tag
To: <sip:support@acd.example.com>
Contact: <sip:1001@127.0.0.1:5062;ob>
Call-ID: call-1@127.0.0.1
CSeq: 1 INVITE
Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS
Supported: replaces, 100rel, timer, norefersub
Session-Expires: 1800
Min-SE: 90
User-Agent: PJSUA v2.14 Linux-6.1/x86_64/glibc-2.36
X-Queue-Priority: 5
Content-Type: application/sdp
Content-Length: {len}

{sdp}""", "pjsua"),
"invite_baresip": ("""INVITE sip:8000@acd.example.com;transport=udp SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:45321;branch=z9hG4bK2d4b1e8a0c3f;rport
Contact: <sip:bob-0x55d3@192.168.1.20:45321;transport=udp>
Max-Forwards: 70
To: <sip:8000@acd.example.com>
From: "Bob" <sip:bob@acd.example.com>;tag=8f2e1d4c2b6a9f31
Call-ID: 3a9e2c5b7d1f0e84
CSeq: 30917 INVITE
User-Agent: baresip v3.10.1 (x86_64/Linux)
Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER
Supported: replaces,norefersub
Content-Type: application/sdp
Content-Length: {len}

{sdp}""", "baresip"),
"invite_trunk_asterisk": ("""INVITE sip:+4930123456@203.0.113.1:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK1f0e2d3c;rport
Via: SIP/2.0/UDP 10.20.0.5:5060;branch=z9hG4bKupstream;received=10.20.0.5
Max-Forwards: 69
From: "+4917612345678" <sip:+4917612345678@198.51.100.10>;tag=as5e1f2b3c
To: <sip:+4930123456@203.0.113.1:5060>
Contact: <sip:+4917612345678@198.51.100.10:5060>
Call-ID: 1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e@198.51.100.10:5060
CSeq: 102 INVITE
User-Agent: Asterisk PBX 18.10.0
Date: Thu, 03 Dec 2026 10:15:00 GMT
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE
Supported: replaces, timer
P-Asserted-Identity: <sip:+4917612345678@198.51.100.10>
Content-Type: application/sdp
Content-Length: {len}

{sdp}""", "asterisk_trunk"),
"invite_auth_yealink": ("""INVITE sip:support@acd.example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.10.31:5060;branch=z9hG4bK3172841947
From: "Agent 31" <sip:1031@acd.example.com>;tag=2143720291
To: <sip:support@acd.example.com>
Call-ID: 0_3718927583@192.168.10.31
CSeq: 2 INVITE
Contact: <sip:1031@192.168.10.31:5060>
Authorization: """ + ISSUED_AUTH + """
Content-Type: application/sdp
Allow: INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, MESSAGE
Max-Forwards: 70
User-Agent: Yealink SIP-T46S 66.86.0.15
Allow-Events: talk,hold,conference,refer,check-sync
Content-Length: {len}

{sdp}""", "yealink"),
"invite_ipv6_hold": ("""INVITE sip:support@[2001:db8::1] SIP/2.0
Via: SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKv6;rport
Max-Forwards: 70
From: <sip:v6@[2001:db8::5]>;tag=v6tag
To: <sip:support@[2001:db8::1]>
Contact: <sip:v6@[2001:db8::5]:5060>
Call-ID: v6-call@2001:db8::5
CSeq: 7 INVITE
Content-Type: application/sdp
Content-Length: {len}

{sdp}""", "ipv6"),
}
def fill(tmpl, sdp_name):
    body = crlf(SDP[sdp_name])
    head = crlf(tmpl.split("{sdp}")[0].rstrip("\n").replace("{len}", str(len(body))))
    return head + b"\r\n" + body

for name, text in SIP.items():
    if "{sdp}" in text:
        data = fill(text, "linphone")
    else:
        data = crlf(text)
        if not data.endswith(b"\r\n\r\n"):
            data += b"\r\n"
        if name == "compact_headers":
            data = crlf(text.split("\n\nhello")[0]) + b"\r\nhello"
    write("sip_datagram", name, data)
for name, (tmpl, sdp_name) in INVITES.items():
    write("sip_datagram", name, fill(tmpl, sdp_name))
write("sip_datagram", "keepalive", b"\r\n\r\n")

# The stream target sees the same messages, plus back-to-back pairs and a
# keep-alive in front (what a TCP connection carries).
d = os.path.join(ROOT, "sip_datagram")
msgs = {n[5:]: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d)) if n.startswith("seed-")}
for n, m in msgs.items():
    if n != "keepalive":
        write("sip_stream", n, m)
write("sip_stream", "pair_register_options", msgs["register_pjsua"] + msgs["options_sipsak"])
write("sip_stream", "keepalive_then_invite", b"\r\n\r\n" + msgs["invite_pjsua"])
write("sip_stream", "invite_then_bye", msgs["invite_baresip"] + msgs["bye_in_dialog"])
write("sip_stream", "partial_body", msgs["invite_pjsua"][:-40])
