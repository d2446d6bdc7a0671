//! Audio checks for the interop tests: read the WAVs that `ua.py record`
//! writes, measure tones in them, compare spectra, and write test tones.
//!
//! Conventions: samples are `f32` in -1..1 (full-scale 16-bit = ±1.0);
//! "power" is mean-square amplitude, so a sine of amplitude `A` has power
//! `A²/2` and a pure sine's [`goertzel_power`] at its own frequency equals
//! `rms(x)²`.  Nothing here allocates more than one window or per-band
//! vector, and all of it is fast enough in debug builds (10 s at 16 kHz:
//! well under a second for [`spectrum_similarity`]).
#![allow(dead_code)]

use std::f32::consts::PI;
use std::path::Path;

/// Reads a WAV file: returns the samples of its first channel scaled to
/// -1..1 and its sample rate.  Integer formats (8/16/24/32 bit) are divided
/// by 2^(bits-1); float WAVs are taken as they are.  Panics with the path
/// and the reason if the file cannot be read.
pub fn read_wav(path: &Path) -> (Vec<f32>, u32) {
    let mut reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("cannot read WAV {}: {e}", path.display()));
    let spec = reader.spec();
    let channels = spec.channels.max(1) as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader.samples::<i32>().step_by(channels).map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>()
        }
        hound::SampleFormat::Float => reader.samples::<f32>().step_by(channels).collect::<Result<_, _>>(),
    }
    .unwrap_or_else(|e| panic!("cannot read samples of WAV {}: {e}", path.display()));
    (samples, spec.sample_rate)
}

/// Root mean square of the samples (0.0 for an empty slice).  A sine of
/// amplitude `A` gives `A/√2`.
pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|&x| x as f64 * x as f64).sum::<f64>() / samples.len() as f64).sqrt() as f32
}

/// Goertzel filter over the whole slice at `freq` (any frequency, not only
/// DFT bins), rectangular window, normalised by length: returns
/// `2·|X(freq)|² / N²`, i.e. the mean power of the signal's component at
/// `freq`.  A sine of amplitude `A` at exactly `freq` gives `A²/2` (same as
/// its `rms²`); content more than a few `rate/N` Hz away gives ≈ 0 — over
/// the whole slice this filter is very narrow (0.25 Hz for 4 s), see
/// [`tone_ratio`] for a more forgiving measure.  0.0 for an empty slice.
pub fn goertzel_power(samples: &[f32], rate: u32, freq: f32) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let (re, im) = goertzel(samples.iter().copied(), rate, freq);
    let n = samples.len() as f64;
    (2.0 * (re * re + im * im) / (n * n)) as f32
}

/// Real and imaginary part of `Σ x[n]·e^{-jωn}` (up to a phase factor,
/// which does not matter for magnitudes), ω = 2π·freq/rate.
fn goertzel(samples: impl Iterator<Item = f32>, rate: u32, freq: f32) -> (f64, f64) {
    let w = 2.0 * std::f64::consts::PI * freq as f64 / rate as f64;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = x as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 - s2 * w.cos(), s2 * w.sin())
}

/// Length of the blocks [`tone_ratio`] measures in.
const TONE_BLOCK_SECS: f32 = 0.05;

/// How much of the signal is a tone at `freq`: the energy found at `freq`
/// divided by the total energy, ≈ 0..1.
///
/// Exactly: the slice is cut into consecutive 50 ms blocks (rectangular,
/// the last partial block is included); for each block `b` of length `n_b`
/// the Goertzel power `P_b` ([`goertzel_power`] of the block) is taken;
/// the result is `Σ P_b·n_b / Σ x²` (0.0 if the signal is all zeros).
///
/// So a pure sine at `freq` gives ≈ 1.0 wherever it starts and stops
/// (silence before/after adds no energy), a sine 5 Hz off gives ≈ 0.8,
/// 10 Hz off ≈ 0.4, and a tone ≥ 60 Hz away < 0.01 (the 50 ms blocks give
/// a sinc response with ±20 Hz main lobe).  A mix of tones gives each
/// tone's share of the energy (two equal tones: ≈ 0.5 each); broadband
/// noise with power `N` adds ≈ `20 Hz / (rate/2)` of its share.  Phase
/// jumps between blocks (loop seams, packet loss concealment) do not hurt.
pub fn tone_ratio(samples: &[f32], rate: u32, freq: f32) -> f32 {
    let total: f64 = samples.iter().map(|&x| x as f64 * x as f64).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let block = ((rate as f32 * TONE_BLOCK_SECS).round() as usize).max(1);
    let mut at_freq = 0.0f64;
    for chunk in samples.chunks(block) {
        at_freq += goertzel_power(chunk, rate, freq) as f64 * chunk.len() as f64;
    }
    (at_freq / total) as f32
}

/// Window length of [`band_spectrum`]: 32 ms, i.e. 256 samples at 8 kHz and
/// 512 at 16 kHz, so spectra of different sample rates are comparable.
const SPECTRUM_WINDOW_SECS: f32 = 0.032;
/// At most this many windows are analysed (evenly spread over the signal).
const SPECTRUM_MAX_WINDOWS: usize = 160;
/// At most this many probe frequencies per band.
const SPECTRUM_MAX_PROBES: usize = 4;

/// Average magnitude spectrum of the signal in the given bands
/// (`(low_hz, high_hz)` each), one value per band.
///
/// Exactly: the signal is cut into 32 ms windows (non-overlapping; if there
/// are more than 160, 160 evenly spread ones are used), each multiplied by
/// a Hann window.  Each band is probed at `k` frequencies evenly spread
/// inside it (probe `i` at `low + (i+0.5)·(high-low)/k`, `k` = the band
/// width in 31.25 Hz DFT bins rounded up, 1..=4).  A probe's power in a
/// window is the Goertzel power normalised by the window's sum so that a
/// sine of amplitude `A` at the probe frequency gives `A²/2`.  A band's
/// value is the square root of the mean power over all its probes and all
/// windows: roughly the RMS amplitude of the band's content, averaged over
/// time.  A steady sine of amplitude `A` gives at most `A/√2` in its band
/// (exactly that in a one-probe band with the sine on the probe); in the
/// 70 Hz [`default_bands`] it gives ≈ 0.8 of that when centred, ≈ 0.6 at a
/// band edge (then ≈ 0.6 in the neighbour too), as the probes off the sine
/// see less: the Hann window spreads a sine over ±62 Hz.  Empty
/// input gives zeros; input shorter than one window is analysed as one
/// (shorter) window.
pub fn band_spectrum(samples: &[f32], rate: u32, bands: &[(f32, f32)]) -> Vec<f32> {
    let mut out = vec![0.0f64; bands.len()];
    if samples.is_empty() || bands.is_empty() {
        return vec![0.0; bands.len()];
    }
    let win = ((rate as f32 * SPECTRUM_WINDOW_SECS).round() as usize).clamp(1, samples.len());
    let n_windows = samples.len() / win;
    let starts: Vec<usize> = if n_windows <= SPECTRUM_MAX_WINDOWS {
        (0..n_windows.max(1)).map(|i| i * win).collect()
    } else {
        (0..SPECTRUM_MAX_WINDOWS).map(|i| i * (n_windows - 1) / (SPECTRUM_MAX_WINDOWS - 1) * win).collect()
    };
    let hann: Vec<f32> = if win == 1 {
        vec![1.0]
    } else {
        (0..win).map(|n| 0.5 - 0.5 * (2.0 * PI * n as f32 / (win - 1) as f32).cos()).collect()
    };
    let wsum: f64 = hann.iter().map(|&w| w as f64).sum();
    let bin_hz = rate as f32 / win as f32;
    let probes: Vec<Vec<f32>> = bands
        .iter()
        .map(|&(lo, hi)| {
            let width = (hi - lo).max(0.0);
            let k = ((width / bin_hz).ceil() as usize).clamp(1, SPECTRUM_MAX_PROBES);
            (0..k).map(|i| lo + (i as f32 + 0.5) * width / k as f32).collect()
        })
        .collect();
    let mut buf = vec![0.0f32; win];
    for &start in &starts {
        for (b, (x, w)) in buf.iter_mut().zip(samples[start..start + win].iter().zip(&hann)) {
            *b = x * w;
        }
        for (band, freqs) in probes.iter().enumerate() {
            let mut p = 0.0f64;
            for &f in freqs {
                let (re, im) = goertzel(buf.iter().copied(), rate, f);
                p += 2.0 * (re * re + im * im) / (wsum * wsum);
            }
            out[band] += p / freqs.len() as f64;
        }
    }
    out.iter().map(|&p| (p / starts.len() as f64).sqrt() as f32).collect()
}

/// The bands [`spectrum_similarity`] uses: 50 bands of 70 Hz each, linearly
/// spaced from 100 Hz to 3600 Hz (the part of the spectrum that survives
/// G.711 at 8 kHz).
pub fn default_bands() -> Vec<(f32, f32)> {
    (0..50).map(|i| (100.0 + 70.0 * i as f32, 170.0 + 70.0 * i as f32)).collect()
}

/// How alike two signals' spectral shapes are, 0..1: the cosine similarity
/// `a·b / (|a|·|b|)` of their [`band_spectrum`]s over [`default_bands`]
/// (average magnitude in 50 bands, 100–3600 Hz).  1.0 = the same shape;
/// loudness does not matter (the cosine is scale-invariant) and neither do
/// the sample rates, timing or phase (each spectrum is a time average).
/// Unrelated tone sets score near 0, the same music after a codec
/// round trip (G.711, resampling) close to 1.  0.0 if either signal has no
/// energy in the bands.
pub fn spectrum_similarity(a: &[f32], a_rate: u32, b: &[f32], b_rate: u32) -> f32 {
    let bands = default_bands();
    let sa = band_spectrum(a, a_rate, &bands);
    let sb = band_spectrum(b, b_rate, &bands);
    cosine(&sa, &sb)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if na <= 0.0 || nb <= 0.0 {
        return 0.0;
    }
    (dot / (na * nb)) as f32
}

/// Writes a 16-bit mono WAV of `secs` seconds at `rate`: the sum of equal
/// sines at `freqs`, each of amplitude `0.8 / freqs.len()` (so the sum never
/// clips), all starting at phase 0.  No `freqs` = silence.  Panics on I/O
/// errors.
pub fn write_tone_wav(path: &Path, rate: u32, freqs: &[f32], secs: f32) {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w =
        hound::WavWriter::create(path, spec).unwrap_or_else(|e| panic!("cannot create WAV {}: {e}", path.display()));
    let n = (rate as f32 * secs).round() as usize;
    let amp = if freqs.is_empty() { 0.0 } else { 0.8 / freqs.len() as f64 };
    for i in 0..n {
        let t = i as f64 / rate as f64;
        let v: f64 = freqs.iter().map(|&f| amp * (2.0 * std::f64::consts::PI * f as f64 * t).sin()).sum();
        w.write_sample((v * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
            .unwrap_or_else(|e| panic!("cannot write WAV {}: {e}", path.display()));
    }
    w.finalize().unwrap_or_else(|e| panic!("cannot finish WAV {}: {e}", path.display()));
}
