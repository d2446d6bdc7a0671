//! Sound files and clips.
//!
//! acd plays hold music and announcements from WAV files. To keep the media
//! plane trivial (no resampling, no mixing), it accepts exactly one format:
//! 8000 Hz, mono, 16-bit integer PCM, and says how to convert anything else.
//! A loaded sound becomes a [`Clip`]: encoded once to both G.711 laws and cut
//! into 20 ms frames, shared (`Arc`) by every call that plays it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::g711::{self, Codec};

/// The only sample rate acd plays (G.711's).
pub const SAMPLE_RATE: u32 = 8000;

/// Samples in one 20 ms RTP frame at 8 kHz (and bytes, once G.711-encoded).
pub const FRAME_SAMPLES: usize = 160;

/// Milliseconds per frame.
const FRAME_MS: u64 = 20;

/// Why a sound file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file is missing, unreadable or not a valid WAV file.
    #[error("cannot read {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    /// A valid WAV file in a format acd does not play.
    #[error(
        "{} is {rate} Hz, {channels} channel(s), {bits}-bit {format}: sound files must be 8000 Hz mono \
         16-bit PCM WAV (convert with: sox in.wav -r 8000 -c 1 -b 16 out.wav)",
        .path.display()
    )]
    Format { path: PathBuf, rate: u32, channels: u16, bits: u16, format: &'static str },
    /// A well-formed file without a single sample.
    #[error("{} contains no samples", .path.display())]
    Empty { path: PathBuf },
}

/// Loads an 8000 Hz mono 16-bit PCM WAV file; any other format is rejected
/// with [`AudioError::Format`], naming the file's actual format.
pub fn load_wav(path: &Path) -> Result<Vec<i16>, AudioError> {
    let read_error = |e: hound::Error| {
        let mut reason = e.to_string();
        if matches!(e, hound::Error::Unsupported | hound::Error::FormatError(_)) {
            reason.push_str(" (sound files must be 8000 Hz mono 16-bit PCM WAV)");
        }
        AudioError::Read { path: path.to_path_buf(), reason }
    };
    let mut reader = hound::WavReader::open(path).map_err(read_error)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(AudioError::Format {
            path: path.to_path_buf(),
            rate: spec.sample_rate,
            channels: spec.channels,
            bits: spec.bits_per_sample,
            format: match spec.sample_format {
                hound::SampleFormat::Int => "PCM",
                hound::SampleFormat::Float => "float",
            },
        });
    }
    // A truncated file fails here, on the first sample that is missing.
    let samples = reader.samples::<i16>().collect::<Result<Vec<i16>, _>>().map_err(read_error)?;
    if samples.is_empty() {
        return Err(AudioError::Empty { path: path.to_path_buf() });
    }
    Ok(samples)
}

/// One frame of G.711 silence per law, returned for frames of an empty clip.
static SILENCE_PCMU: [u8; FRAME_SAMPLES] = [0xFF; FRAME_SAMPLES];
static SILENCE_PCMA: [u8; FRAME_SAMPLES] = [0xD5; FRAME_SAMPLES];

/// A sound ready to send: encoded once to both G.711 laws and cut into
/// [`FRAME_SAMPLES`]-byte frames, the last one padded with silence.
/// Cloning is cheap (the encodings are shared).
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pcmu: Arc<[u8]>,
    pcma: Arc<[u8]>,
    frames: usize,
}

impl Clip {
    /// Encodes `samples` (8 kHz linear PCM). An empty slice gives an empty clip.
    pub fn from_pcm(samples: &[i16]) -> Clip {
        let frames = samples.len().div_ceil(FRAME_SAMPLES);
        // Pad the linear signal with zeros, which both laws encode as silence.
        let mut padded = samples.to_vec();
        padded.resize(frames * FRAME_SAMPLES, 0);
        let mut pcmu = Vec::with_capacity(padded.len());
        let mut pcma = Vec::with_capacity(padded.len());
        g711::encode(Codec::Pcmu, &padded, &mut pcmu);
        g711::encode(Codec::Pcma, &padded, &mut pcma);
        Clip { pcmu: pcmu.into(), pcma: pcma.into(), frames }
    }

    /// `frames` frames of silence (`silence(10)` is 200 ms).
    pub fn silence(frames: usize) -> Clip {
        Clip::from_pcm(&vec![0; frames * FRAME_SAMPLES])
    }

    /// The clips one after the other.
    pub fn concat(clips: &[&Clip]) -> Clip {
        let join = |law: fn(&Clip) -> &[u8]| -> Arc<[u8]> {
            clips.iter().flat_map(|c| law(c).iter().copied()).collect::<Vec<u8>>().into()
        };
        Clip { pcmu: join(|c| &c.pcmu), pcma: join(|c| &c.pcma), frames: clips.iter().map(|c| c.frames).sum() }
    }

    /// Number of 20 ms frames.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Frame `i % frames` in `codec`, always [`FRAME_SAMPLES`] bytes, so a
    /// player can loop by counting up. An empty clip plays silence.
    pub fn frame(&self, codec: Codec, i: usize) -> &[u8] {
        if self.frames == 0 {
            return match codec {
                Codec::Pcmu => &SILENCE_PCMU,
                Codec::Pcma => &SILENCE_PCMA,
            };
        }
        let start = (i % self.frames) * FRAME_SAMPLES;
        let bytes = match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        };
        &bytes[start..start + FRAME_SAMPLES]
    }

    /// Playing time in milliseconds (20 ms per frame).
    pub fn duration_ms(&self) -> u64 {
        self.frames as u64 * FRAME_MS
    }
}

/// A sum of sines (`freqs` in Hz) at 8 kHz, `on_ms` on and `off_ms` off,
/// repeated for `total_ms`; `amplitude` is the peak of the sum. The built-in
/// ringback is `tone(&[440.0, 480.0], 2000, 4000, 6000, ..)` (North American).
/// Each burst ramps in and out over 5 ms so the cadence does not click.
pub fn tone(freqs: &[f32], on_ms: u32, off_ms: u32, total_ms: u32, amplitude: i16) -> Vec<i16> {
    let per_ms = (SAMPLE_RATE / 1000) as usize;
    let total = total_ms as usize * per_ms;
    let on = on_ms as usize * per_ms;
    let period = (on_ms as usize + off_ms as usize) * per_ms;
    if freqs.is_empty() || on == 0 {
        return vec![0; total];
    }
    let ramp = (5 * per_ms).min(on / 2).max(1);
    // Each sine gets an equal share so the sum never exceeds `amplitude`.
    let scale = f32::from(amplitude) / freqs.len() as f32;
    (0..total)
        .map(|n| {
            let k = n % period;
            if k >= on {
                return 0;
            }
            let envelope = (k.min(on - 1 - k) as f32 / ramp as f32).min(1.0);
            let t = n as f32 / SAMPLE_RATE as f32;
            let sum: f32 = freqs.iter().map(|f| (std::f32::consts::TAU * f * t).sin()).sum();
            (sum * scale * envelope).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for this test's files.
    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("acd-audio-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    /// Writes a WAV file with `spec` and `n` samples of a ramp.
    fn write_wav(path: &Path, spec: hound::WavSpec, n: usize) {
        let mut w = hound::WavWriter::create(path, spec).expect("create wav");
        for i in 0..n {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(i as f32 / n as f32).expect("write"),
                (_, 8) => w.write_sample((i % 100) as i8).expect("write"),
                _ => w.write_sample((i % 1000) as i16).expect("write"),
            }
        }
        w.finalize().expect("finalize wav");
    }

    fn spec(rate: u32, channels: u16, bits: u16) -> hound::WavSpec {
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format: hound::SampleFormat::Int }
    }

    #[test]
    fn loads_8khz_mono_16bit() {
        let path = temp_dir("ok").join("good.wav");
        write_wav(&path, spec(8000, 1, 16), 500);
        let samples = load_wav(&path).expect("valid file");
        assert_eq!(samples.len(), 500);
        assert_eq!(&samples[..3], &[0, 1, 2]);
    }

    #[test]
    fn rejects_other_formats_naming_path_and_format() {
        let dir = temp_dir("formats");
        let float = hound::WavSpec { sample_format: hound::SampleFormat::Float, ..spec(8000, 1, 32) };
        let cases = [
            ("cd.wav", spec(44100, 1, 16), "44100 Hz, 1 channel(s), 16-bit PCM"),
            ("stereo.wav", spec(8000, 2, 16), "8000 Hz, 2 channel(s), 16-bit PCM"),
            ("8bit.wav", spec(8000, 1, 8), "8000 Hz, 1 channel(s), 8-bit PCM"),
            ("float.wav", float, "8000 Hz, 1 channel(s), 32-bit float"),
        ];
        for (name, spec, format) in cases {
            let path = dir.join(name);
            write_wav(&path, spec, 400);
            let err = load_wav(&path).expect_err(name);
            assert!(matches!(err, AudioError::Format { .. }), "{name}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(format), "{msg}");
            assert!(msg.contains("sox in.wav -r 8000 -c 1 -b 16 out.wav"), "{msg}");
        }
    }

    #[test]
    fn missing_garbage_and_empty_files_are_errors() {
        let dir = temp_dir("bad");
        let missing = dir.join("nope.wav");
        let err = load_wav(&missing).expect_err("missing");
        assert!(matches!(err, AudioError::Read { .. }));
        assert!(err.to_string().starts_with(&format!("cannot read {}: ", missing.display())), "{err}");

        let garbage = dir.join("garbage.wav");
        std::fs::write(&garbage, b"this is not a wav file").expect("write");
        assert!(matches!(load_wav(&garbage), Err(AudioError::Read { .. })));

        let empty = dir.join("empty.wav");
        write_wav(&empty, spec(8000, 1, 16), 0);
        let err = load_wav(&empty).expect_err("empty");
        assert_eq!(err.to_string(), format!("{} contains no samples", empty.display()));
    }

    #[test]
    fn clip_pads_the_last_frame_with_silence() {
        let clip = Clip::from_pcm(&[1000; 161]);
        assert_eq!(clip.frames(), 2);
        assert_eq!(clip.duration_ms(), 40);
        let encode_one = |codec, s| {
            let mut out = Vec::new();
            g711::encode(codec, &[s], &mut out);
            out[0]
        };
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let silence = encode_one(codec, 0);
            let loud = encode_one(codec, 1000);
            assert!(clip.frame(codec, 0).iter().all(|&b| b == loud));
            let last = clip.frame(codec, 1);
            assert_eq!(last.len(), FRAME_SAMPLES);
            assert_eq!(last[0], loud);
            assert!(last[1..].iter().all(|&b| b == silence));
            // Frames wrap around, so a player loops by counting up.
            assert_eq!(clip.frame(codec, 2), clip.frame(codec, 0));
        }
    }

    #[test]
    fn empty_clip_plays_silence() {
        let clip = Clip::from_pcm(&[]);
        assert_eq!((clip.frames(), clip.duration_ms()), (0, 0));
        assert_eq!(clip.frame(Codec::Pcmu, 7), &[0xFF; FRAME_SAMPLES][..]);
        assert_eq!(clip.frame(Codec::Pcma, 0), &[0xD5; FRAME_SAMPLES][..]);
        assert_eq!(Clip::silence(0), clip);
    }

    #[test]
    fn concat_adds_frames_in_order() {
        let a = Clip::from_pcm(&[1000; 320]);
        let b = Clip::silence(3);
        let c = Clip::from_pcm(&[-1000; 10]);
        let all = Clip::concat(&[&a, &b, &c]);
        assert_eq!(all.frames(), 6);
        assert_eq!(all.duration_ms(), 120);
        assert_eq!(all.frame(Codec::Pcma, 1), a.frame(Codec::Pcma, 1));
        assert_eq!(all.frame(Codec::Pcmu, 2), b.frame(Codec::Pcmu, 0));
        assert_eq!(all.frame(Codec::Pcmu, 5), c.frame(Codec::Pcmu, 0));
        assert_eq!(Clip::concat(&[]).frames(), 0);
    }

    /// Upward zero crossings, i.e. cycles of the dominant frequency.
    fn upward_crossings(s: &[i16]) -> usize {
        s.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count()
    }

    #[test]
    fn tone_has_the_right_frequency_and_cadence() {
        let s = tone(&[440.0], 1000, 0, 1000, 8000);
        assert_eq!(s.len(), 8000);
        assert!((439..=441).contains(&upward_crossings(&s)), "{}", upward_crossings(&s));
        assert!(s.iter().all(|x| x.abs() <= 8000));
        assert!(s.iter().any(|x| x.abs() > 7900));

        // Ringback: 2 s on, 4 s off. A 440 + 480 Hz sum beats at 40 Hz but
        // still crosses zero at its 460 Hz mean frequency.
        let ring = tone(&[440.0, 480.0], 2000, 4000, 12000, 10000);
        assert_eq!(ring.len(), 96000);
        let on = &ring[..16000];
        let crossings = upward_crossings(on);
        assert!((840..=1000).contains(&crossings), "{crossings}");
        assert!(ring[16000..48000].iter().all(|&x| x == 0));
        assert!(ring[48000..64000].iter().any(|&x| x != 0));
        assert_eq!(tone(&[], 100, 0, 100, 1000), vec![0; 800]);
    }

    #[test]
    fn shipped_hold_music_is_audible_and_long_enough() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sounds/music/default.wav");
        let s = load_wav(&path).expect("shipped hold music loads");
        let secs = s.len() as f64 / f64::from(SAMPLE_RATE);
        assert!(secs > 5.0, "{secs} s");
        let rms = (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
        assert!(rms > 500.0, "rms {rms}");
    }
}
