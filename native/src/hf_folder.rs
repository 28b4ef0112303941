//! A Hugging Face model folder on disk: its JSON files read, its safetensors files
//! memory-mapped, and the model parsed by `wisp_core::hf`.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use memmap2::Mmap;
use wisp_core::hf::{HfModel, HfTensors, INDEX_FILE, LoadOptions, SINGLE_FILE, shard_files};
use wisp_core::tokenizer::Tokenizer;

/// The tokenizer's files.
const TOKENIZER: &str = "tokenizer.json";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
/// Newer `transformers` versions save the chat template beside the tokenizer config.
const CHAT_TEMPLATE: &str = "chat_template.jinja";

pub struct HfFolder {
    pub dir: PathBuf,
    pub model: HfModel,
    /// The safetensors files, in the order `model` was parsed with.
    shards: Vec<(String, Mmap)>,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

fn read_optional(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    if path.exists() {
        read(dir, name).map(Some)
    } else {
        Ok(None)
    }
}

fn map(path: &Path) -> Result<Mmap> {
    let handle = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: read-only map, as for GGUF files (see `common::Model::open`).
    unsafe { Mmap::map(&handle) }.with_context(|| format!("mapping {}", path.display()))
}

impl HfFolder {
    /// Reads `config.json`, the index if there is one, and maps the safetensors files it
    /// names (or `model.safetensors`), then parses and checks the model.
    pub fn open(dir: &Path, options: &LoadOptions) -> Result<HfFolder> {
        let config = read(dir, "config.json")?;
        let index = read_optional(dir, INDEX_FILE)?;
        let names = match &index {
            Some(bytes) => shard_files(bytes)
                .with_context(|| format!("reading {}", dir.join(INDEX_FILE).display()))?,
            None if dir.join(SINGLE_FILE).exists() => vec![SINGLE_FILE.to_string()],
            None => bail!(
                "{} has neither {SINGLE_FILE} nor {INDEX_FILE}",
                dir.display()
            ),
        };
        let mut shards = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(&name);
            if !path.is_file() {
                bail!(
                    "{INDEX_FILE} names the shard {name}, but {} does not exist",
                    path.display()
                );
            }
            shards.push((name, map(&path)?));
        }
        let parts: Vec<(&str, &[u8])> = shards.iter().map(|(n, m)| (n.as_str(), &m[..])).collect();
        let model = HfModel::parse(&config, index.as_deref(), &parts, options)
            .with_context(|| format!("reading the model in {}", dir.display()))?;
        Ok(HfFolder {
            dir: dir.to_path_buf(),
            model,
            shards,
        })
    }

    /// The tensor bytes, converted as the options asked.
    pub fn tensors(&self) -> HfTensors<'_> {
        let bytes: Vec<&[u8]> = self.shards.iter().map(|(_, m)| &m[..]).collect();
        self.model.tensors(&bytes)
    }

    /// Bytes of the safetensors files.
    pub fn file_bytes(&self) -> u64 {
        self.shards.iter().map(|(_, m)| m.len() as u64).sum()
    }

    /// `tokenizer.json` and `tokenizer_config.json` (with `chat_template.jinja` merged in
    /// when the config has no template of its own).
    pub fn tokenizer_files(&self) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        let tokenizer = read(&self.dir, TOKENIZER)?;
        let mut config = read_optional(&self.dir, TOKENIZER_CONFIG)?;
        if let Some(template) = read_optional(&self.dir, CHAT_TEMPLATE)? {
            let template = String::from_utf8(template)
                .with_context(|| format!("{CHAT_TEMPLATE} is not UTF-8"))?;
            let mut json: serde_json::Value = match &config {
                Some(bytes) => serde_json::from_slice(bytes)
                    .with_context(|| format!("parsing {TOKENIZER_CONFIG}"))?,
                None => serde_json::json!({}),
            };
            if let Some(obj) = json.as_object_mut()
                && obj
                    .get("chat_template")
                    .is_none_or(serde_json::Value::is_null)
            {
                obj.insert("chat_template".into(), template.into());
            }
            config = Some(serde_json::to_vec(&json)?);
        }
        Ok((tokenizer, config))
    }

    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let (tokenizer, config) = self.tokenizer_files()?;
        Tokenizer::from_json(&tokenizer, config.as_deref())
            .with_context(|| format!("reading the tokenizer in {}", self.dir.display()))
    }
}
