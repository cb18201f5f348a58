//! Standard output of the commands, which readers may stop reading at any time.

use std::io::Write;

/// Standard output for a command's results. When the reader has gone away (`| head`), the
/// process ends at once, quietly and successfully, as a filter killed by SIGPIPE would:
/// nobody is left to read anything more (`println!` would panic instead). Any other write
/// error is returned.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Stdout::unless_gone(std::io::stdout().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Stdout::unless_gone(std::io::stdout().flush())
    }
}

impl Stdout {
    fn unless_gone<T>(written: std::io::Result<T>) -> std::io::Result<T> {
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            other => other,
        }
    }
}

/// Writes one line to [`Stdout`], as `println!` does to standard output.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    let written = writeln!(Stdout, "{line}").and_then(|()| Stdout.flush());
    if let Err(e) = written {
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`print_line`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::tools::stdout::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::tools::stdout::print_line(format_args!($($arg)*))
    };
}
