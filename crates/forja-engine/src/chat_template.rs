//! Chat templates: the model's own Jinja template, rendered with minijinja
//! configured like Hugging Face's (`trim_blocks`, `lstrip_blocks`, Python
//! string methods, `raise_exception`, `strftime_now`).

use crate::{EngineError, Result};
use forja_core::ChatMessage;
use minijinja::{context, Environment, ErrorKind};

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatTemplate")
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos` and `eos` are the strings templates see as
    /// `bos_token` and `eos_token`.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| EngineError::ChatTemplate(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        minijinja_contrib::add_to_environment(&mut env);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        // Templates use it to print today's date in the system prompt.
        env.add_function("strftime_now", |fmt: String| {
            jiff::Timestamp::now().strftime(&fmt).to_string()
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| EngineError::ChatTemplate(format!("does not compile: {e:#}")))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends
    /// where the assistant's reply should begin.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").expect("added in new");
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => &m.content })
            .collect();
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos,
            eos_token => &self.eos,
            tools => minijinja::Value::from(()),
        })
        .map_err(|e| EngineError::ChatTemplate(format!("rendering failed: {e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn check(template: &str, msgs: &[ChatMessage], gen: bool, want: &str) {
        let t = ChatTemplate::new(template, "<s>", "</s>").unwrap();
        assert_eq!(t.render(msgs, gen).unwrap(), want);
    }

    #[test]
    fn renders_like_transformers() {
        check(
            CHATML,
            &[ChatMessage::user("Hi")],
            true,
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        );
        check(
            CHATML,
            &[ChatMessage::system("S"), ChatMessage::user("Q"), ChatMessage::assistant("A")],
            false,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n",
        );
        // Llama-2 style: bos_token, .strip(), trim_blocks/lstrip_blocks.
        check(
            "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}[INST] {{ m.content.strip() }} [/INST]{% else %} {{ m.content }}{{ eos_token }}{% endif %}\n{% endfor %}",
            &[ChatMessage::user("  hello "), ChatMessage::assistant("yo")],
            false,
            "<s>[INST] hello [/INST] yo</s>",
        );
    }

    #[test]
    fn template_errors_are_reported() {
        let e = ChatTemplate::new("{% for %}", "", "").unwrap_err().to_string();
        assert!(e.starts_with("chat template: does not compile"), "{e}");
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let e = t.render(&[], true).unwrap_err().to_string();
        assert!(e.contains("roles must alternate"), "{e}");
    }
}
