//! Stop strings over streamed text.

/// What a [`StopMatcher`] lets through for one piece of text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopOutcome {
    /// Text safe to emit now: it cannot be (the start of) a stop string. When a stop string
    /// was hit, this is the text before it.
    pub text: String,
    /// Index (in the list given to [`StopMatcher::new`]) of the stop string that was hit, if
    /// any. Once set, the matcher stays stopped: later pushes emit nothing and repeat it.
    pub stop: Option<usize>,
}

impl StopOutcome {
    /// Whether generation should stop.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_some()
    }
}

/// Finds stop strings in streamed text while emitting as much as it safely can.
///
/// Text is held back only while it could still become a stop string: the held tail is
/// always the shortest suffix that starts at the earliest position where some stop string
/// could begin. When a stop string completes, the text before its first occurrence is
/// emitted and the rest dropped. Matching is on whole UTF-8 characters (a match of valid
/// UTF-8 in valid UTF-8 always starts on a character boundary); [`push_bytes`](Self::push_bytes)
/// accepts token bytes that split characters.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    /// Non-empty stop strings with their index in the caller's list.
    stops: Vec<(usize, String)>,
    /// Length in bytes of the longest stop string.
    longest: usize,
    /// Text received but not yet emitted; never contains a whole stop string.
    held: String,
    /// Bytes of an incomplete UTF-8 character from `push_bytes`.
    partial: Vec<u8>,
    stopped: Option<usize>,
}

impl StopMatcher {
    /// A matcher for `stops`. Empty strings are ignored: they would match before any text.
    pub fn new<I, S>(stops: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let stops: Vec<(usize, String)> = stops
            .into_iter()
            .map(Into::into)
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .collect();
        let longest = stops.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
        Self {
            stops,
            longest,
            held: String::new(),
            partial: Vec::new(),
            stopped: None,
        }
    }

    /// The stop string hit so far, if any.
    pub fn stopped(&self) -> Option<usize> {
        self.stopped
    }

    /// Feeds one piece of text.
    pub fn push(&mut self, piece: &str) -> StopOutcome {
        if self.partial.is_empty() {
            return self.push_text(piece);
        }
        // A `&str` starts on a character boundary, so pending bytes of an unfinished
        // character can never be completed now: they become U+FFFD, as a lossy decoder would.
        self.partial.clear();
        let mut text = String::with_capacity(piece.len() + 3);
        text.push(char::REPLACEMENT_CHARACTER);
        text.push_str(piece);
        self.push_text(&text)
    }

    /// Feeds raw bytes (e.g. a byte-level token), which may end inside a UTF-8 character:
    /// the incomplete tail waits for the next call. Invalid sequences become U+FFFD.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> StopOutcome {
        self.partial.extend_from_slice(bytes);
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.partial) {
                Ok(valid) => {
                    text.push_str(valid);
                    self.partial.clear();
                    break;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    // The prefix is valid UTF-8, so the lossy conversion is a plain copy.
                    text.push_str(&String::from_utf8_lossy(&self.partial[..valid]));
                    match error.error_len() {
                        // Incomplete character at the end: keep it for the next call.
                        None => {
                            self.partial.drain(..valid);
                            break;
                        }
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.partial.drain(..valid + bad);
                        }
                    }
                }
            }
        }
        self.push_text(&text)
    }

    /// End of stream: emits the held-back tail (it never completed a stop string), including
    /// an unfinished UTF-8 character as U+FFFD. The matcher is then empty; a stop it had hit
    /// stays reported until [`reset`](Self::reset).
    pub fn finish(&mut self) -> StopOutcome {
        let mut outcome = if self.partial.is_empty() {
            StopOutcome {
                text: String::new(),
                stop: self.stopped,
            }
        } else {
            self.partial.clear();
            self.push_text("\u{FFFD}")
        };
        if self.stopped.is_none() {
            outcome.text.push_str(&self.held);
        }
        self.held.clear();
        outcome
    }

    /// Forgets held text and any stop, for a new stream with the same stop strings.
    pub fn reset(&mut self) {
        self.held.clear();
        self.partial.clear();
        self.stopped = None;
    }

    fn push_text(&mut self, piece: &str) -> StopOutcome {
        if self.stopped.is_some() {
            return StopOutcome {
                text: String::new(),
                stop: self.stopped,
            };
        }
        self.held.push_str(piece);

        // The earliest occurrence of any stop string wins (list order among equal starts):
        // the text before it is all the user may see.
        let mut first: Option<(usize, usize)> = None;
        for (index, stop) in &self.stops {
            if let Some(at) = self.held.find(stop.as_str())
                && first.is_none_or(|(best, _)| at < best)
            {
                first = Some((at, *index));
            }
        }
        if let Some((at, index)) = first {
            self.held.truncate(at);
            self.stopped = Some(index);
            return StopOutcome {
                text: std::mem::take(&mut self.held),
                stop: Some(index),
            };
        }

        // No stop string yet. Hold back from the earliest position whose suffix is still a
        // proper prefix of some stop string; everything before it can never be part of one.
        // Such a suffix is shorter than the longest stop string, so only the last
        // `longest - 1` bytes need checking.
        let from = self
            .held
            .len()
            .saturating_sub(self.longest.saturating_sub(1));
        let hold_at = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .skip_while(|&i| i < from)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|(_, stop)| stop.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let tail = self.held.split_off(hold_at);
        StopOutcome {
            text: std::mem::replace(&mut self.held, tail),
            stop: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces`, checking each outcome's text and stop; returns the finish() text.
    fn run(stops: &[&str], steps: &[(&str, &str, Option<usize>)]) -> StopMatcher {
        let mut m = StopMatcher::new(stops.iter().copied());
        for (i, &(piece, text, stop)) in steps.iter().enumerate() {
            let out = m.push(piece);
            assert_eq!(
                out,
                StopOutcome {
                    text: text.to_string(),
                    stop
                },
                "step {i}: {piece:?}"
            );
        }
        m
    }

    #[test]
    fn no_stop_strings_passes_everything() {
        let mut m = run(&[], &[("hello", "hello", None), (" world", " world", None)]);
        assert_eq!(m.finish().text, "");
        let mut m = run(&[""], &[("a", "a", None)]);
        assert_eq!(m.finish(), StopOutcome::default());
    }

    #[test]
    fn stop_split_across_pieces() {
        let m = run(
            &["</s>"],
            &[
                ("Hello <", "Hello ", None),
                ("/", "", None),
                ("s>tail", "", Some(0)),
                ("more", "", Some(0)),
            ],
        );
        assert_eq!(m.stopped(), Some(0));
        // Stop inside one piece: text before it is emitted, the rest dropped.
        run(&["STOP"], &[("abcSTOPdef", "abc", Some(0))]);
    }

    #[test]
    fn partial_prefix_that_does_not_match_is_released() {
        let mut m = run(&["abc"], &[("xab", "x", None), ("d", "abd", None)]);
        assert_eq!(m.finish().text, "");
        // Released text may itself start a new partial match.
        let mut m = run(
            &["abc"],
            &[("ab", "", None), ("ab", "ab", None), ("c!", "", Some(0))],
        );
        assert_eq!(m.finish().text, "");
        // Only the part that can still match is held, never more: "aab" in "aaab".
        run(
            &["aab"],
            &[("aa", "", None), ("a", "a", None), ("b", "", Some(0))],
        );
    }

    #[test]
    fn multiple_and_overlapping_stop_strings() {
        // Earliest occurrence wins even though "bc" is listed second.
        run(&["abx", "bc"], &[("ab", "", None), ("c", "a", Some(1))]);
        // "abc" starts before "bcd": it wins.
        run(&["bcd", "abc"], &[("ab", "", None), ("cd", "", Some(1))]);
        // Same start: the first listed wins.
        run(&["ab", "abc"], &[("xabc", "x", Some(0))]);
        // Overlapping prefixes: held while either could still complete.
        let mut m = run(
            &["hello world", "hello there"],
            &[
                ("say hello ", "say ", None),
                ("w", "", None),
                ("x", "hello wx", None),
            ],
        );
        assert_eq!(m.finish().text, "");
        run(
            &["hello world", "hello there"],
            &[("hello th", "", None), ("ere", "", Some(1))],
        );
    }

    #[test]
    fn multi_byte_characters() {
        // Stop string of multi-byte characters, split between characters.
        let mut m = run(
            &["終了"],
            &[("日本語終", "日本語", None), ("わり", "終わり", None)],
        );
        assert_eq!(m.finish().text, "");
        run(&["終了"], &[("前終", "前", None), ("了後", "", Some(0))]);
        // Emoji and accented text around an ASCII stop string.
        run(&["\n\n"], &[("é😀\n", "é😀", None), ("\n👍", "", Some(0))]);
        // The held-back window counts bytes, but positions are always character boundaries.
        let mut m = run(&["ééé"], &[("aéé", "a", None)]);
        assert_eq!(m.finish().text, "éé");
    }

    #[test]
    fn bytes_split_inside_characters() {
        let mut m = StopMatcher::new(["é!"]);
        let bytes = "xé!y".as_bytes(); // x, 0xC3 0xA9, !, y
        assert_eq!(m.push_bytes(&bytes[..2]).text, "x");
        let out = m.push_bytes(&bytes[2..4]);
        assert_eq!(
            out,
            StopOutcome {
                text: String::new(),
                stop: Some(0)
            }
        );

        let mut m = StopMatcher::new(["zz"]);
        let smile = "😀".as_bytes();
        assert_eq!(m.push_bytes(&smile[..1]).text, "");
        assert_eq!(m.push_bytes(&smile[1..3]).text, "");
        assert_eq!(m.push_bytes(&smile[3..]).text, "😀");
        // Invalid bytes become U+FFFD; an unfinished character at the end too.
        assert_eq!(m.push_bytes(&[b'a', 0xFF, b'b']).text, "a\u{FFFD}b");
        assert_eq!(m.push_bytes(&smile[..2]).text, "");
        assert_eq!(m.finish().text, "\u{FFFD}");
        // A str piece after an unfinished character: the character can never complete.
        assert_eq!(m.push_bytes(&smile[..2]).text, "");
        assert_eq!(m.push("ok").text, "\u{FFFD}ok");
    }

    #[test]
    fn finish_flushes_held_tail_once() {
        let mut m = run(&["<|end|>"], &[("answer <|en", "answer ", None)]);
        assert_eq!(
            m.finish(),
            StopOutcome {
                text: "<|en".into(),
                stop: None
            }
        );
        assert_eq!(m.finish(), StopOutcome::default());
        // After a stop, finish emits nothing and keeps reporting the stop.
        let mut m = run(&["<|end|>"], &[("done<|end|>", "done", Some(0))]);
        assert_eq!(
            m.finish(),
            StopOutcome {
                text: String::new(),
                stop: Some(0)
            }
        );
        m.reset();
        assert_eq!(m.push("again").text, "again");
    }

    /// Property: for every way of splitting a text into two or three pieces, the emitted
    /// text is the same as for the whole text at once, and nothing is held longer than the
    /// longest stop string's prefix requires.
    #[test]
    fn splitting_never_changes_the_result() {
        let stops = ["abab", "bä", "終了!"];
        let texts = [
            "xxababyy",
            "aba bä",
            "ababa",
            "ab終了!z",
            "終了",
            "abä",
            "b",
            "ababab",
        ];
        for text in texts {
            let mut whole = StopMatcher::new(stops);
            let mut expect = whole.push(text);
            let tail = whole.finish();
            expect.text.push_str(&tail.text);
            let boundaries: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            for &i in &boundaries {
                for &j in boundaries.iter().filter(|&&j| j >= i) {
                    let mut m = StopMatcher::new(stops);
                    let mut got = String::new();
                    let mut stop = None;
                    for piece in [&text[..i], &text[i..j], &text[j..]] {
                        let out = m.push(piece);
                        // Held text never exceeds the longest stop string minus one byte.
                        assert!(m.held.len() < 7, "{text:?} held {:?}", m.held);
                        got.push_str(&out.text);
                        stop = stop.or(out.stop);
                    }
                    got.push_str(&m.finish().text);
                    assert_eq!(
                        (got.as_str(), stop),
                        (expect.text.as_str(), expect.stop),
                        "{text:?} split at {i}, {j}"
                    );
                }
            }
        }
    }
}
