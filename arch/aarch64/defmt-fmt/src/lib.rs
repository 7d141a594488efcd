//! `mica_defmt_fmt::println!("DOM{id}: {path} not passed through: {why}")` becomes
//! `defmt::println!("DOM{}: {} not passed through: {}", Display2Format(&id), …)`: the format
//! string, in Rust's syntax (inline captures, positional and named arguments, format specs),
//! is rewritten into defmt's, whose constant text is interned in the ELF's `.defmt` table.
//! Each argument is still formatted on the device (its Rust format spec kept) and sent as
//! text, since Mica's log arguments are `Display` values of every kind.
//!
//! Parsing is by hand over `proc_macro` tokens (no syn): a string literal, then
//! comma-separated expressions, `name = expr` for named ones. Not supported, each a compile
//! error rather than a wrong line: raw string literals, `{:.*}`, and an argument with a
//! top-level comma outside brackets (`f::<A, B>(x)`; write it in parentheses).

// Tests unwrap freely: a panic there is a test failure with a message.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use proc_macro::{Delimiter, Group, Spacing, Span, TokenStream, TokenTree};

/// One `{…}` of the format string.
#[derive(Debug, PartialEq)]
struct Placeholder {
    /// Which argument: the next positional, a position, or a name.
    argument: Argument,
    /// Everything after `:` (empty for none).
    spec: String,
}

#[derive(Debug, PartialEq)]
enum Argument {
    Next,
    Index(usize),
    Name(String),
}

/// Splits the inside of a string literal (escapes left as written) into defmt's format text,
/// with every placeholder turned into `{}`, and the placeholders in order.
fn rewrite(literal: &str) -> Result<(String, Vec<Placeholder>), String> {
    let mut text = String::new();
    let mut placeholders = Vec::new();
    let mut chars = literal.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push_str("{{");
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push_str("}}");
            }
            '}' => return Err("unmatched `}` in format string".into()),
            '{' => {
                let mut inside = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => inside.push(c),
                        None => return Err("unmatched `{` in format string".into()),
                    }
                }
                let (name, spec) = match inside.split_once(':') {
                    Some((name, spec)) => (name.trim(), spec.to_string()),
                    None => (inside.trim(), String::new()),
                };
                if spec.contains('*') {
                    // `.*` takes its precision from an extra argument: not worth supporting.
                    return Err(format!("unsupported placeholder `{{{inside}}}`"));
                }
                let argument = if name.is_empty() {
                    Argument::Next
                } else if let Ok(index) = name.parse() {
                    Argument::Index(index)
                } else if name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    Argument::Name(name.to_string())
                } else {
                    return Err(format!("unsupported placeholder `{{{inside}}}`"));
                };
                placeholders.push(Placeholder { argument, spec });
                text.push_str("{}");
            }
            c => text.push(c),
        }
    }
    Ok((text, placeholders))
}

/// The arguments after the format string: positional expressions and `name = expr` pairs.
struct Arguments {
    positional: Vec<TokenStream>,
    named: Vec<(String, TokenStream)>,
}

fn split_arguments(tokens: Vec<TokenTree>) -> Arguments {
    let mut arguments = Arguments {
        positional: Vec::new(),
        named: Vec::new(),
    };
    let mut pieces: Vec<Vec<TokenTree>> = vec![Vec::new()];
    for token in tokens {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => pieces.push(Vec::new()),
            _ => {
                if let Some(piece) = pieces.last_mut() {
                    piece.push(token);
                }
            }
        }
    }
    for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
        // `name = expr` (a lone `=`, not `==`).
        let named = match (piece.first(), piece.get(1)) {
            (Some(TokenTree::Ident(name)), Some(TokenTree::Punct(eq)))
                if eq.as_char() == '=' && eq.spacing() == Spacing::Alone =>
            {
                Some(name.to_string())
            }
            _ => None,
        };
        match named {
            Some(name) => arguments
                .named
                .push((name, piece.into_iter().skip(2).collect())),
            None => arguments.positional.push(piece.into_iter().collect()),
        }
    }
    arguments
}

/// The rendering of one argument: `Display2Format` of the value, or of `format_args!` with
/// its Rust spec when it has one.
fn render(expr: TokenStream, spec: &str) -> String {
    if spec.is_empty() {
        format!("::defmt::Display2Format(&({expr}))")
    } else {
        format!("::defmt::Display2Format(&::core::format_args!(\"{{:{spec}}}\", {expr}))")
    }
}

/// Gives every token `span`. The expansion is made from text, so its tokens would otherwise
/// resolve where `info!` is defined and not see the caller's variables (hygiene).
fn respan(stream: TokenStream, span: Span) -> TokenStream {
    stream
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(g) = &token {
                let mut group = Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                return TokenTree::Group(group);
            }
            token.set_span(span);
            token
        })
        .collect()
}

fn expand(input: TokenStream) -> Result<(String, Span), String> {
    let mut tokens: Vec<TokenTree> = input.into_iter().collect();
    // A macro_rules caller may hand the literal over wrapped in an invisible group.
    if let Some(TokenTree::Group(g)) = tokens.first() {
        if g.delimiter() == Delimiter::None {
            let inner: Vec<TokenTree> = g.stream().into_iter().collect();
            tokens.splice(0..1, inner);
        }
    }
    let (literal, span) = match tokens.first() {
        Some(TokenTree::Literal(l)) => (l.to_string(), l.span()),
        _ => return Err("expected a format string literal first".into()),
    };
    let inner = literal
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .ok_or("expected a plain \"…\" string literal")?;
    let (text, placeholders) = rewrite(inner)?;
    let rest = match tokens.get(1) {
        None => Vec::new(),
        Some(TokenTree::Punct(p)) if p.as_char() == ',' => tokens[2..].to_vec(),
        Some(_) => return Err("expected `,` after the format string".into()),
    };
    let arguments = split_arguments(rest);
    let mut next = 0;
    let mut used_positional = vec![false; arguments.positional.len()];
    let mut used_named = vec![false; arguments.named.len()];
    let mut rendered = Vec::new();
    for placeholder in &placeholders {
        let expr = match &placeholder.argument {
            Argument::Next | Argument::Index(_) => {
                let i = match placeholder.argument {
                    Argument::Index(i) => i,
                    _ => {
                        next += 1;
                        next - 1
                    }
                };
                let expr = arguments
                    .positional
                    .get(i)
                    .ok_or_else(|| format!("no argument {i} for the format string"))?;
                used_positional[i] = true;
                expr.clone()
            }
            Argument::Name(name) => match arguments.named.iter().position(|(n, _)| n == name) {
                Some(i) => {
                    used_named[i] = true;
                    arguments.named[i].1.clone()
                }
                // An inline capture: the variable of that name at the call site.
                None => name
                    .parse()
                    .map_err(|_| format!("`{name}` is not a name"))?,
            },
        };
        rendered.push(render(expr, &placeholder.spec));
    }
    // As in Rust's format_args!, every argument must be used.
    if used_positional.contains(&false) || used_named.contains(&false) {
        return Err("an argument is not used by the format string".into());
    }
    let mut call = format!("::defmt::println!(\"{text}\"");
    for argument in rendered {
        call.push_str(", ");
        call.push_str(&argument);
    }
    call.push(')');
    Ok((call, span))
}

/// `println!` with a Rust format string, sent through `defmt::println!`.
#[proc_macro]
pub fn println(input: TokenStream) -> TokenStream {
    // Errors point at the caller's format string.
    let first = input
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span());
    let (source, span) = match expand(input) {
        Ok(expanded) => expanded,
        Err(why) => (format!("::core::compile_error!({why:?})"), first),
    };
    let tokens = source.parse().unwrap_or_else(|_| {
        "::core::compile_error!(\"mica-defmt-fmt made bad tokens\")"
            .parse()
            .unwrap_or_default()
    });
    respan(tokens, span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Argument {
        Argument::Name(n.into())
    }

    #[test]
    fn rewrites_every_kind_of_placeholder() {
        let (text, p) = rewrite("DOM{id}: {} at {:#x}, {0} {dtb:#x} {e:?}").unwrap();
        assert_eq!(text, "DOM{}: {} at {}, {} {} {}");
        let args: Vec<&Argument> = p.iter().map(|p| &p.argument).collect();
        assert_eq!(
            args,
            [
                &name("id"),
                &Argument::Next,
                &Argument::Next,
                &Argument::Index(0),
                &name("dtb"),
                &name("e")
            ]
        );
        assert_eq!(p[2].spec, "#x");
        assert_eq!(p[4].spec, "#x");
        assert_eq!(p[5].spec, "?");
    }

    #[test]
    fn keeps_escaped_braces_and_escapes() {
        let (text, p) = rewrite("a {{b}} \\\"c\\\"\\n").unwrap();
        assert_eq!(text, "a {{b}} \\\"c\\\"\\n");
        assert!(p.is_empty());
    }

    #[test]
    fn refuses_broken_strings() {
        assert!(rewrite("{").is_err());
        assert!(rewrite("}").is_err());
        assert!(rewrite("{a.b}").is_err());
        assert!(rewrite("{:.*}").is_err());
    }
}
