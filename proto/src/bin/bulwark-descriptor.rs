//! Writes Bulwark's encoded descriptor set to a file, for Envoy's gRPC-JSON
//! transcoder (`proto_descriptor`): `bulwark-descriptor <output-file>`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::{env, fs, io};

const USAGE: &str = "usage: bulwark-descriptor <output-file>\n\
    Writes the encoded protobuf descriptor set of Bulwark's APIs (with imports and\n\
    google.api.http bindings) to <output-file>, creating missing parent directories.";

fn main() -> ExitCode {
    let path = match output_path(env::args_os().skip(1).collect()) {
        Ok(Some(path)) => path,
        Ok(None) => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("bulwark-descriptor: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match write_atomically(&path, bulwark_proto::FILE_DESCRIPTOR_SET) {
        Ok(()) => {
            eprintln!(
                "bulwark-descriptor: wrote {} ({} bytes)",
                path.display(),
                bulwark_proto::FILE_DESCRIPTOR_SET.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bulwark-descriptor: cannot write {}: {err}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// The output path from the arguments; `None` when help was asked for.
fn output_path(args: Vec<OsString>) -> Result<Option<PathBuf>, String> {
    match args.as_slice() {
        [] => Err("missing the output file argument".to_owned()),
        [arg] if arg == "-h" || arg == "--help" => Ok(None),
        [arg] if arg.is_empty() => Err("the output file argument is empty".to_owned()),
        [arg] if arg.to_string_lossy().starts_with('-') => {
            Err(format!("unknown option {}", arg.to_string_lossy()))
        }
        [arg] => Ok(Some(PathBuf::from(arg))),
        more => Err(format!(
            "expected one argument, the output file, got {}",
            more.len()
        )),
    }
}

/// Writes through a temporary sibling and a rename, so a reader (Envoy
/// starting up) never sees a half-written descriptor.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, bytes)?;
    fs::rename(&temporary, path).inspect_err(|_| {
        let _ = fs::remove_file(&temporary);
    })
}
