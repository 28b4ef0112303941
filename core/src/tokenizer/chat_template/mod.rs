//! Chat templates: the Jinja templates Hugging Face models ship, rendered with minijinja the
//! way `transformers`' `apply_chat_template` renders them.

mod json;
mod time;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use super::TokenizerError;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, … (templates decide which they accept).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    fn to_value(&self) -> Value {
        Value::from_pairs([
            ("role", self.role.as_str()),
            ("content", self.content.as_str()),
        ])
    }
}

/// A compiled chat template.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat_template";

/// ChatML, the fallback for models that ship no template.
const CHATML: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// Gemma's turns (`<start_of_turn>user` / `model`), for Gemma GGUFs that ship no
/// template. Gemma has no system role: a system message opens the first user turn.
const GEMMA: &str = "{{- bos_token }}\
{%- set first_user_prefix = '' %}{%- set loop_messages = messages %}\
{%- if messages and messages[0]['role'] == 'system' %}\
{%- set first_user_prefix = messages[0]['content'] + '\n\n' %}{%- set loop_messages = messages[1:] %}\
{%- endif %}\
{%- for message in loop_messages %}\
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}\
{{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<start_of_turn>model\n' }}{%- endif %}";

impl ChatTemplate {
    /// The built-in template for a model that ships none, chosen by its vocabulary:
    /// Gemma's turns when it has `<start_of_turn>`, else ChatML.
    pub fn builtin_for(has_token: impl Fn(&str) -> bool, bos_token: String) -> Self {
        if has_token("<start_of_turn>") && has_token("<end_of_turn>") {
            // GEMMA is a constant, compiled in the tests: failing here is a bug in this file.
            return ChatTemplate::new(GEMMA, bos_token, "<end_of_turn>".into())
                .expect("the built-in Gemma template compiles");
        }
        ChatTemplate::chatml()
    }

    /// Compiles `source`. `bos_token` and `eos_token` are the texts the template sees under
    /// those names. A syntax error is reported with its line.
    pub fn new(source: &str, bos_token: String, eos_token: String) -> Result<Self, TokenizerError> {
        let mut env = Environment::new();
        // transformers compiles templates with these two options: block tags do not leave
        // their line's indentation and newline in the output.
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| render_error(&e))?;
        env.set_syntax(syntax);
        // Python string and dict methods (`.strip()`, `.startswith()`, `.items()`, …).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", time::strftime_now_function(None));
        // transformers' `tojson` (Python's json.dumps, non-ASCII kept) replaces Jinja's
        // HTML-safe one, whose escapes would change the prompt.
        env.add_filter("tojson", json::tojson);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| TokenizerError::TemplateSyntax {
                line: e.line().unwrap_or(0),
                message: describe(&e),
            })?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token,
            eos_token,
        })
    }

    /// The ChatML template (`<|im_start|>role\ncontent<|im_end|>\n`).
    pub fn chatml() -> Self {
        // CHATML is a constant, compiled in the tests: failing here is a bug in this file.
        ChatTemplate::new(CHATML, String::new(), "<|im_end|>".into())
            .expect("the built-in ChatML template compiles")
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Fixes the time `strftime_now` formats (seconds since 1970, UTC). By default it is the
    /// current time; on wasm32 there is no clock, so callers there set it.
    pub fn set_unix_time(&mut self, seconds: i64) {
        self.env
            .add_function("strftime_now", time::strftime_now_function(Some(seconds)));
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends where the
    /// assistant's answer begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let template = self.env.get_template(NAME).map_err(|e| render_error(&e))?;
        let messages: Vec<Value> = messages.iter().map(ChatMessage::to_value).collect();
        let context = Value::from_pairs([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
            // transformers passes these as None when the caller gives none.
            ("tools", Value::from(())),
            ("documents", Value::from(())),
        ]);
        template.render(context).map_err(|e| render_error(&e))
    }
}

/// The error `raise_exception(message)` raises; found again in the error's sources.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

fn describe(e: &Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn render_error(e: &Error) -> TokenizerError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(raised) = s.downcast_ref::<Raised>() {
            return TokenizerError::TemplateRaised {
                line: e.line(),
                message: raised.0.clone(),
            };
        }
        source = s.source();
    }
    TokenizerError::TemplateRender {
        line: e.line(),
        message: describe(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(content: &str) -> ChatMessage {
        ChatMessage::new("user", content)
    }

    #[test]
    fn chatml_renders() {
        let out = ChatTemplate::chatml()
            .render(&[ChatMessage::new("system", "S"), user("Hi")], true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = ChatTemplate::chatml().render(&[user("Hi")], false).unwrap();
        assert_eq!(out, "<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn gemma_fallback_folds_the_system_message_into_the_first_turn() {
        let has_all = |_: &str| true;
        let t = ChatTemplate::builtin_for(has_all, "<bos>".into());
        let out = t
            .render(
                &[
                    ChatMessage::new("system", "Be brief."),
                    user("Hi "),
                    ChatMessage::new("assistant", "Hello"),
                    user("Bye"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        // Without Gemma's turn tokens the fallback is ChatML.
        let t = ChatTemplate::builtin_for(|_| false, String::new());
        assert_eq!(
            t.render(&[user("Hi")], false).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn blocks_are_trimmed_as_in_transformers() {
        let source = "{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(source, String::new(), String::new()).unwrap();
        assert_eq!(
            t.render(&[user("a"), user("b")], false).unwrap(),
            "[a]\n[b]\n"
        );
    }

    #[test]
    fn syntax_error_names_its_line() {
        let err =
            ChatTemplate::new("line one\n{% if %}\n", String::new(), String::new()).unwrap_err();
        assert!(
            matches!(err, TokenizerError::TemplateSyntax { line: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn raise_exception_reports_its_message() {
        let source = "{% if messages[0]['role'] != 'user' %}\n{{ raise_exception('Only user messages, please') }}\n{% endif %}";
        let t = ChatTemplate::new(source, String::new(), String::new()).unwrap();
        let err = t
            .render(&[ChatMessage::new("system", "x")], false)
            .unwrap_err();
        match &err {
            TokenizerError::TemplateRaised { line, message } => {
                assert_eq!(message, "Only user messages, please");
                assert_eq!(*line, Some(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(t.render(&[user("x")], false).is_ok());
    }

    #[test]
    fn globals_and_python_methods() {
        let source = "{{ bos_token }}{{ messages[0].content.strip().upper() }}\
{% if messages[0]['content'].startswith(' hi') %}!{% endif %}{{ eos_token }}\
{% if tools is none %}-{% endif %}{{ messages | length }}";
        let t = ChatTemplate::new(source, "<s>".into(), "</s>".into()).unwrap();
        assert_eq!(
            t.render(&[user(" hi there ")], false).unwrap(),
            "<s>HI THERE!</s>-1"
        );
    }

    #[test]
    fn strftime_now_uses_the_set_time() {
        let mut t = ChatTemplate::new(
            "Today Date: {{ strftime_now('%d %b %Y') }}",
            String::new(),
            String::new(),
        )
        .unwrap();
        t.set_unix_time(1_721_999_109);
        assert_eq!(t.render(&[], false).unwrap(), "Today Date: 26 Jul 2024");
    }

    #[test]
    fn undefined_message_field_is_an_error_with_a_line() {
        let t = ChatTemplate::new(
            "ok\n{{ messages[0].content + 1 }}",
            String::new(),
            String::new(),
        )
        .unwrap();
        let err = t.render(&[user("x")], false).unwrap_err();
        assert!(
            matches!(err, TokenizerError::TemplateRender { line: Some(2), .. }),
            "{err:?}"
        );
    }
}
