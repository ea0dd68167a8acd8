//! What the user sees on stderr: `--explain` lines (each HTTP request, its
//! status, and the curl command that would make the same request) and the
//! per-blob progress bars, which only appear on a terminal.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shared by every download thread.
pub struct Reporter {
    explain: bool,
    bars: Option<MultiProgress>,
}

impl Reporter {
    pub fn new(explain: bool, quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Reporter { explain, bars }
    }

    pub fn explaining(&self) -> bool {
        self.explain
    }

    /// Prints one `--explain` line (above the progress bars, if any).
    pub fn explain(&self, line: impl FnOnce() -> String) {
        if !self.explain {
            return;
        }
        let line = line();
        match &self.bars {
            Some(bars) => {
                // Only fails when the terminal is gone; the line is then lost anyway.
                let _ = bars.println(&line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// A progress bar for one blob, or a hidden one off a terminal.
    pub fn bar(&self, label: &str, size: u64) -> ProgressBar {
        let Some(bars) = &self.bars else {
            return ProgressBar::hidden();
        };
        let bar = bars.add(ProgressBar::new(size));
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// Quotes a word for a POSIX shell, only when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// How a request authenticates, as shown in the curl command (never the
/// secret itself).
pub enum ShownAuth<'a> {
    None,
    Basic(&'a str),
    Bearer,
}

/// The curl command for one request.
pub fn curl_command(
    url: &str,
    accept: &[&str],
    auth: ShownAuth<'_>,
    range_start: Option<u64>,
    insecure: bool,
) -> String {
    let mut cmd = String::from("curl -sS");
    if insecure {
        cmd.push_str(" -k");
    }
    if !accept.is_empty() {
        cmd.push_str(" -H ");
        cmd.push_str(&shell_quote(&format!("Accept: {}", accept.join(", "))));
    }
    match auth {
        ShownAuth::None => {}
        ShownAuth::Basic(user) => {
            cmd.push_str(" -u ");
            cmd.push_str(&shell_quote(&format!("{user}:PASSWORD")));
        }
        ShownAuth::Bearer => cmd.push_str(r#" -H "Authorization: Bearer $TOKEN""#),
    }
    if let Some(start) = range_start {
        cmd.push_str(&format!(" -r {start}-"));
    }
    cmd.push(' ');
    cmd.push_str(&shell_quote(url));
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_commands_quote_and_hide_secrets() {
        assert_eq!(
            curl_command("http://h/v2/", &[], ShownAuth::None, None, false),
            "curl -sS http://h/v2/"
        );
        assert_eq!(
            curl_command(
                "https://h/t?service=a b&scope=repository:x:pull",
                &["a/b", "c/d"],
                ShownAuth::Basic("me"),
                Some(10),
                true
            ),
            "curl -sS -k -H 'Accept: a/b, c/d' -u me:PASSWORD -r 10- 'https://h/t?service=a b&scope=repository:x:pull'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
