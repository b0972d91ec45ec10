//! A child process on a pseudo-terminal, as a person at a terminal sees it: what it wrote, and
//! a way to type.

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often [`Terminal::expect`] looks at the screen again.
const POLL: Duration = Duration::from_millis(10);

/// The terminal side of a child running on a pty.
pub struct Terminal {
    pub input: File,
    screen: Arc<Mutex<String>>,
    /// Everything before this offset was already matched.
    seen: usize,
    /// How long [`Terminal::expect`] waits for one needle.
    deadline: Duration,
}

impl Terminal {
    /// Starts `cmd` with its stdin, stdout and stderr on a new pty.
    pub fn spawn(cmd: &mut Command, deadline: Duration) -> (Child, Terminal) {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = File::from(pty.slave);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().unwrap();
        let master = File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let mut answerer = master.try_clone().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child has exited and closed the pty.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
                // rustyline asks where the cursor is; answer like a terminal would.
                if chunk.contains("\x1b[6n") {
                    let _ = answerer.write_all(b"\x1b[1;1R");
                }
                sink.lock().unwrap().push_str(&chunk);
            }
        });
        (
            child,
            Terminal {
                input: master,
                screen,
                seen: 0,
                deadline,
            },
        )
    }

    /// Everything the child wrote so far.
    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until `needle` appears after what was already matched; returns the text from
    /// the previous match to the end of this one.
    pub fn expect(&mut self, needle: &str) -> String {
        let start = tokio::time::Instant::now();
        loop {
            let screen = self.screen();
            if let Some(i) = screen[self.seen..].find(needle) {
                let text = screen[self.seen..self.seen + i + needle.len()].to_owned();
                self.seen += i + needle.len();
                return text;
            }
            assert!(
                start.elapsed() < self.deadline,
                "timed out waiting for {needle:?}; screen so far:\n{screen}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Types `text` as it is.
    pub fn type_text(&mut self, text: &str) {
        self.input.write_all(text.as_bytes()).unwrap();
        self.input.flush().unwrap();
    }

    /// Types a line and presses Enter.
    pub fn line(&mut self, text: &str) {
        self.type_text(&format!("{text}\r"));
    }
}
