//! G.711 (PCMU / PCMA) sample conversion.
//!
//! Written by hand because no maintained crate does G.711 sample conversion
//! (rtc-rtp's `G711Payloader` only splits payloads into packets). This is the
//! ITU-T G.711 reference algorithm, as in the well-known Sun Microsystems
//! public-domain `g711.c`: 16-bit linear PCM in, 8-bit companded codes out.
//!
//! - μ-law (PCMU, RTP payload type 0): 14-bit magnitude, biased by 0x84,
//!   8 segments; zero encodes to 0xFF.
//! - A-law (PCMA, RTP payload type 8): 13-bit magnitude, 8 segments, even bits
//!   inverted (XOR 0x55); zero encodes to 0xD5.
//!
//! Decoding returns the middle of the quantisation interval, so
//! `decode(encode(x))` is within half a step of `x` (the step is 8 at the
//! smallest μ-law segment and 1024 at the largest).

/// A G.711 law, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// μ-law, RTP payload type 0.
    Pcmu,
    /// A-law, RTP payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551): 0 for PCMU, 8 for PCMA.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in SDP `a=rtpmap` ("PCMU" / "PCMA").
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// μ-law bias added to the magnitude before finding the segment.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude μ-law can represent once biased (32635 + 0x84 = 0x7FFF).
const ULAW_CLIP: i32 = 32635;

/// Encodes one 16-bit linear sample to μ-law.
pub fn linear_to_ulaw(s: i16) -> u8 {
    let s = i32::from(s);
    // Sign bit 0x80 for negative samples; work on the magnitude.
    let (sign, magnitude) = if s < 0 { (0x80, -s) } else { (0x00, s) };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // The segment (exponent) is the position of the highest set bit above bit 7:
    // biased is in [0x84, 0x7FFF], so exponent is 0..=7.
    let exponent = (31 - biased.leading_zeros() as i32 - 7).max(0);
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    // The code is transmitted with all bits inverted.
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Decodes one μ-law code to a 16-bit linear sample (range ±32124).
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    // Middle of the interval, still biased, then remove the bias.
    let t = ((mantissa << 3) + ULAW_BIAS) << exponent;
    let value = if u & 0x80 != 0 { ULAW_BIAS - t } else { t - ULAW_BIAS };
    value as i16
}

/// Upper ends of the eight A-law segments, on the 13-bit magnitude.
const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// Encodes one 16-bit linear sample to A-law.
pub fn linear_to_alaw(s: i16) -> u8 {
    // A-law works on 13 bits.
    let pcm = i32::from(s) >> 3;
    // Positive values carry the sign bit (0x80); 0x55 inverts the even bits.
    // Negative values use the one's complement, so -1 and 0 are mirror images.
    let (mask, magnitude) = if pcm >= 0 { (0xD5, pcm) } else { (0x55, -pcm - 1) };
    // The 13-bit magnitude is at most 0xFFF, so a segment is always found;
    // the fallback only keeps the function total.
    let Some(seg) = ALAW_SEG_END.iter().position(|&end| magnitude <= end) else {
        return (0x7F ^ mask) as u8;
    };
    let shift = if seg < 2 { 1 } else { seg };
    let code = ((seg as i32) << 4) | ((magnitude >> shift) & 0x0F);
    (code ^ mask) as u8
}

/// Decodes one A-law code to a 16-bit linear sample (range ±32256).
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let seg = (a >> 4) & 0x07;
    // Mantissa in 16-bit units, plus half a step (the interval middle).
    let mut t = i32::from(a & 0x0F) << 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    let value = if a & 0x80 != 0 { t } else { -t };
    value as i16
}

/// Encodes `pcm` with `codec`, appending one byte per sample to `out`.
pub fn encode(codec: Codec, pcm: &[i16], out: &mut Vec<u8>) {
    let f = match codec {
        Codec::Pcmu => linear_to_ulaw,
        Codec::Pcma => linear_to_alaw,
    };
    out.extend(pcm.iter().map(|&s| f(s)));
}

/// Decodes `bytes` with `codec`, appending one sample per byte to `out`.
pub fn decode(codec: Codec, bytes: &[u8], out: &mut Vec<i16>) {
    let f = match codec {
        Codec::Pcmu => ulaw_to_linear,
        Codec::Pcma => alaw_to_linear,
    };
    out.extend(bytes.iter().map(|&b| f(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_and_payload_types() {
        assert_eq!((Codec::Pcmu.payload_type(), Codec::Pcmu.name()), (0, "PCMU"));
        assert_eq!((Codec::Pcma.payload_type(), Codec::Pcma.name()), (8, "PCMA"));
    }

    #[test]
    fn ulaw_known_values() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(linear_to_ulaw(-1000), 0x4E);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xCE), 988);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(linear_to_alaw(-1000), 0x7A);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0xFA), 1008);
    }

    /// Half the quantisation step of the μ-law segment `code` is in.
    fn ulaw_half_step(code: u8) -> i32 {
        4 << ((!code >> 4) & 0x07)
    }

    /// Half the quantisation step of the A-law segment `code` is in.
    fn alaw_half_step(code: u8) -> i32 {
        8 << (((code ^ 0x55) >> 4) & 0x07).saturating_sub(1)
    }

    #[test]
    fn ulaw_round_trip_error_is_within_half_a_step() {
        for x in i16::MIN..=i16::MAX {
            let code = linear_to_ulaw(x);
            let y = i32::from(ulaw_to_linear(code));
            let x = i32::from(x);
            if x.abs() <= ULAW_CLIP {
                assert!((x - y).abs() <= ulaw_half_step(code), "x={x} code={code:#04x} y={y}");
            } else {
                // Beyond the clip level, the largest code of the right sign.
                assert_eq!(y, 32124 * x.signum(), "x={x}");
            }
        }
    }

    #[test]
    fn alaw_round_trip_error_is_within_half_a_step() {
        for x in i16::MIN..=i16::MAX {
            let code = linear_to_alaw(x);
            let y = i32::from(alaw_to_linear(code));
            let x = i32::from(x);
            // +1: negative values are quantised by their one's complement.
            assert!((x - y).abs() <= alaw_half_step(code) + 1, "x={x} code={code:#04x} y={y}");
        }
    }

    #[test]
    fn decoding_an_encoded_code_is_stable_for_all_bytes() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let all: Vec<u8> = (0..=255).collect();
            let mut pcm = Vec::new();
            decode(codec, &all, &mut pcm);
            let mut bytes = Vec::new();
            encode(codec, &pcm, &mut bytes);
            let mut again = Vec::new();
            decode(codec, &bytes, &mut again);
            assert_eq!(again, pcm, "{codec:?}");
        }
    }

    #[test]
    fn encode_and_decode_append() {
        let mut out = vec![1u8];
        encode(Codec::Pcmu, &[0, 0], &mut out);
        encode(Codec::Pcma, &[0], &mut out);
        assert_eq!(out, [1, 0xFF, 0xFF, 0xD5]);
        let mut pcm = vec![7i16];
        decode(Codec::Pcma, &[0xD5], &mut pcm);
        assert_eq!(pcm, [7, 8]);
    }
}
