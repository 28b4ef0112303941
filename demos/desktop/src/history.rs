//! Conversations on disk: one JSON file per conversation in `<data>/conversations/`,
//! written to a temporary file and renamed over the old one, so a crash mid-write never
//! leaves half a conversation. On start every file is read back, newest first; a file
//! that cannot be read is named in the UI and left where it is, never overwritten.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use wisp_core::tokenizer::ChatMessage;

/// One conversation: its messages (user and assistant, in order) and the system prompt
/// it was held with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The file name stem: a timestamp, unique within the folder.
    pub id: String,
    pub title: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
    /// `None`: the loaded model's default (see `wisp_core::defaults`). Sent as it is: an
    /// empty one is an empty system message, as with `wisp chat --system ""`.
    #[serde(default)]
    pub system_prompt: Option<String>,
    pub messages: Vec<ChatMessage>,
    /// The model of the last reply (its file name).
    #[serde(default)]
    pub model: Option<String>,
}

/// Longest title, in characters, taken from the first message.
const TITLE_CHARS: usize = 48;

pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Conversation {
    pub fn new(id: String, system_prompt: Option<String>) -> Conversation {
        let now = now_seconds();
        Conversation {
            id,
            title: "New chat".into(),
            created: now,
            updated: now,
            system_prompt,
            messages: Vec::new(),
            model: None,
        }
    }

    /// Adds a message; the first user message names the conversation.
    pub fn push(&mut self, role: &str, content: &str) {
        if role == "user" && !self.messages.iter().any(|m| m.role == "user") {
            self.title = title_of(content);
        }
        self.messages.push(ChatMessage::new(role, content));
        self.updated = now_seconds();
    }

    /// The system prompt in effect: this conversation's own, else `model_default` (`None`:
    /// no system message; the chat template decides).
    pub fn effective_system_prompt<'a>(
        &'a self,
        model_default: Option<&'a str>,
    ) -> Option<&'a str> {
        self.system_prompt
            .as_deref()
            .or(model_default)
            .map(str::trim)
    }

    /// The messages the model sees: the system prompt in effect (when there is one), then
    /// the turns.
    pub fn prompt_messages(&self, model_default: Option<&str>) -> Vec<ChatMessage> {
        let head = self
            .effective_system_prompt(model_default)
            .map(|system| ChatMessage::new("system", system));
        head.into_iter()
            .chain(self.messages.iter().cloned())
            .collect()
    }
}

/// The first line of `text`, cut to [`TITLE_CHARS`] characters.
fn title_of(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("").trim();
    if line.chars().count() <= TITLE_CHARS {
        return if line.is_empty() {
            "New chat".into()
        } else {
            line.to_string()
        };
    }
    let cut: String = line.chars().take(TITLE_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}

/// The folder of saved conversations.
pub struct History {
    dir: PathBuf,
}

/// What was found on disk: the conversations, newest first, and the files that could
/// not be read (path and reason).
pub struct Listing {
    pub conversations: Vec<Conversation>,
    pub unreadable: Vec<String>,
}

impl History {
    pub fn open(data_dir: &Path) -> Result<History> {
        let dir = data_dir.join("conversations");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(History { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every saved conversation, most recently updated first.
    pub fn list(&self) -> Result<Listing> {
        let mut listing = Listing {
            conversations: Vec::new(),
            unreadable: Vec::new(),
        };
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", self.dir.display()))?
                .path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match read_conversation(&path) {
                Ok(c) => listing.conversations.push(c),
                Err(e) => listing
                    .unreadable
                    .push(format!("{}: {e:#}", path.display())),
            }
        }
        listing
            .conversations
            .sort_by(|a, b| b.updated.cmp(&a.updated).then_with(|| b.id.cmp(&a.id)));
        Ok(listing)
    }

    /// An id no saved conversation has: the time, with a counter when taken.
    pub fn new_id(&self) -> String {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let base = format!("chat-{millis}");
        let mut id = base.clone();
        let mut n = 1;
        while self.path_of(&id).exists() {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }

    /// Writes the conversation (atomically: a temporary file renamed over the old one).
    pub fn save(&self, conversation: &Conversation) -> Result<()> {
        check_id(&conversation.id)?;
        let path = self.path_of(&conversation.id);
        let json = serde_json::to_vec_pretty(conversation).context("encoding the conversation")?;
        let tmp = self.dir.join(format!(".{}.json.tmp", conversation.id));
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let path = self.path_of(id);
        std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

/// Ids name files: letters, digits, `-` and `_` only, so none escapes the folder.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("invalid conversation id {id:?}");
    }
    Ok(())
}

fn read_conversation(path: &Path) -> Result<Conversation> {
    let bytes = std::fs::read(path).context("reading")?;
    let conversation: Conversation =
        serde_json::from_slice(&bytes).context("not a saved conversation")?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if conversation.id != stem {
        bail!("its id {:?} does not match its file name", conversation.id);
    }
    Ok(conversation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_come_back_newest_first_with_their_messages() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let mut old = Conversation::new(history.new_id(), Some("Be brief.".into()));
        old.push(
            "user",
            "What is the capital of France?\nAnswer in one word.",
        );
        old.push("assistant", "Paris.");
        old.updated = 100;
        history.save(&old).unwrap();
        let mut new = Conversation::new(history.new_id(), None);
        new.push("user", "Hello");
        new.updated = 200;
        history.save(&new).unwrap();
        assert_ne!(old.id, new.id);

        let listing = History::open(dir.path()).unwrap().list().unwrap();
        assert!(listing.unreadable.is_empty(), "{:?}", listing.unreadable);
        assert_eq!(listing.conversations, vec![new.clone(), old.clone()]);
        assert_eq!(old.title, "What is the capital of France?");
        let prompt = old.prompt_messages(Some("The model's default."));
        assert_eq!(prompt[0], ChatMessage::new("system", "Be brief."));
        assert_eq!(prompt.len(), 3);
        // Without a system prompt of its own a conversation takes the model's (none: no
        // system message); an empty one of its own is an empty system message.
        assert_eq!(
            new.prompt_messages(Some("The model's default."))[0],
            ChatMessage::new("system", "The model's default.")
        );
        assert_eq!(
            new.prompt_messages(None),
            [ChatMessage::new("user", "Hello")]
        );
        let mut silent = new.clone();
        silent.system_prompt = Some(" ".into());
        assert_eq!(
            silent.prompt_messages(Some("The model's default."))[0],
            ChatMessage::new("system", "")
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(history.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn saving_again_replaces_and_delete_removes() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let mut c = Conversation::new(history.new_id(), None);
        c.push("user", "one");
        history.save(&c).unwrap();
        c.push("assistant", "two");
        history.save(&c).unwrap();
        assert_eq!(history.list().unwrap().conversations, vec![c.clone()]);
        history.delete(&c.id).unwrap();
        assert!(history.list().unwrap().conversations.is_empty());
    }

    #[test]
    fn a_corrupt_file_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let bad = history.dir().join("chat-1.json");
        std::fs::write(&bad, b"{\"id\": \"chat-1\", \"tit").unwrap();
        let mut good = Conversation::new(history.new_id(), None);
        good.push("user", "hi");
        history.save(&good).unwrap();
        let listing = history.list().unwrap();
        assert_eq!(listing.conversations, vec![good]);
        assert_eq!(listing.unreadable.len(), 1);
        assert!(
            listing.unreadable[0].contains("chat-1.json")
                && listing.unreadable[0].contains("not a saved conversation"),
            "{:?}",
            listing.unreadable
        );
        assert!(bad.exists());
    }

    #[test]
    fn ids_cannot_leave_the_folder_and_titles_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        assert!(history.delete("../settings").is_err());
        assert!(
            history
                .save(&Conversation::new("a/b".into(), None))
                .is_err()
        );
        let long = "word ".repeat(30);
        let title = title_of(&long);
        assert_eq!(title.chars().count(), TITLE_CHARS);
        assert!(title.ends_with('…'));
        assert_eq!(title_of("   "), "New chat");
    }
}
