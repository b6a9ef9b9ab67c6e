//! Chat modes (seed 000): a named system prompt a conversation starts
//! with. Every tenant has the built-in three (technical, simplified,
//! narrated) until it saves its own list, which may edit them and add
//! custom ones.

use crate::{ControlError, Result};
use forja_store::{ChatMode, TenantSettings};

/// Most modes a tenant keeps.
pub const MAX_MODES: usize = 20;
/// Most characters of a mode's prompt.
pub const MAX_PROMPT: usize = 4000;

/// The built-in modes.
pub fn defaults() -> Vec<ChatMode> {
    let m = |id: &str, name: &str, prompt: &str| ChatMode {
        id: id.into(),
        name: name.into(),
        prompt: prompt.into(),
    };
    vec![
        m(
            "technical",
            "Técnico (completo)",
            "Responde con precisión técnica y de forma completa, en el idioma del usuario, citando los términos exactos.",
        ),
        m(
            "simplified",
            "Simplificado (accesible)",
            "Responde de forma sencilla y breve, sin tecnicismos, para alguien sin formación en el tema.",
        ),
        m(
            "narrated",
            "Narrado (explicativo)",
            "Responde como una explicación narrada, paso a paso y con ejemplos, para que se entienda el porqué.",
        ),
    ]
}

/// The tenant's modes: its own list, or the built-in ones.
pub fn effective(s: &TenantSettings) -> Vec<ChatMode> {
    if s.modes.is_empty() {
        defaults()
    } else {
        s.modes.clone()
    }
}

/// Checks a list to save: 1 to [`MAX_MODES`] modes with unique ids of 1 to
/// 40 of `a-z 0-9 - _`, names of 1 to 60 printable characters and prompts
/// of at most [`MAX_PROMPT`] characters.
pub fn check(modes: &[ChatMode]) -> Result<()> {
    if modes.is_empty() || modes.len() > MAX_MODES {
        return Err(ControlError::invalid("modes", format!("give 1 to {MAX_MODES} modes")));
    }
    for (i, m) in modes.iter().enumerate() {
        let id_ok = !m.id.is_empty()
            && m.id.len() <= 40
            && m.id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !id_ok {
            return Err(ControlError::invalid(
                format!("modes[{i}].id"),
                "1 to 40 of a-z, 0-9, - and _",
            ));
        }
        if modes[..i].iter().any(|o| o.id == m.id) {
            return Err(ControlError::invalid(
                format!("modes[{i}].id"),
                format!("`{}` is used twice", m.id),
            ));
        }
        let n = m.name.trim().chars().count();
        if n == 0 || n > 60 || m.name.chars().any(char::is_control) {
            return Err(ControlError::invalid(
                format!("modes[{i}].name"),
                "1 to 60 printable characters",
            ));
        }
        if m.prompt.chars().count() > MAX_PROMPT {
            return Err(ControlError::invalid(
                format!("modes[{i}].prompt"),
                format!("at most {MAX_PROMPT} characters"),
            ));
        }
    }
    Ok(())
}
