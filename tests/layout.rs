//! The source layout is the architecture: each folder of `src/` is one layer, and a module
//! may import only from its own layer or the layers before it, so no import points back up
//! the flow. Between the files of one folder, imports form no circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Non-test lines a module may have.
const MAX_MODULE_LINES: usize = 700;

/// The layers in flow order: a layer may import from the ones before it.
const LAYERS: &[&str] = &[
    "clock", "geo", "contract", "dispatch", "matching", "metrics", "store", "mqtt", "app", "flow",
    "api", "service", "tools", "cli",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file up to its `#[cfg(test)]` module, without comment lines (a doc link is
/// not an import).
fn non_test_source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = match text.find("\n#[cfg(test)]\nmod tests") {
        Some(end) => &text[..end],
        None => &text,
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module path of a file relative to `src/`: `store/dispatch.rs` -> ["store", "dispatch"],
/// `store/mod.rs` -> ["store"].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every `crate::a::b...` path in `source`, as its segments.
fn crate_paths(source: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in source.match_indices("crate::") {
        if i > 0 && source.as_bytes()[i - 1] == b'$' {
            continue;
        }
        let rest = &source[i + "crate::".len()..];
        let segments: Vec<String> = rest
            .split("::")
            .map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|s| !s.is_empty() && s.chars().next().is_some_and(|c| c.is_lowercase()))
            .collect();
        if !segments.is_empty() {
            out.push(segments);
        }
    }
    out
}

fn layer_of(module: &[String]) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| module.first().is_some_and(|m| m == l))
}

#[test]
fn imports_point_only_down_the_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_path(&src, file);
        let Some(own) = layer_of(&module) else {
            continue;
        };
        for path in crate_paths(&non_test_source(file)) {
            if let Some(to) = layer_of(&path) {
                if to > own {
                    wrong.push(format!(
                        "{} imports crate::{}",
                        file.strip_prefix(&src).unwrap().display(),
                        path.join("::")
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports up the flow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_top_level_module_is_a_known_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            let name = name.trim_end_matches(';');
            assert!(
                LAYERS.contains(&name),
                "module {name} has no layer in LAYERS"
            );
        }
    }
}

#[test]
fn files_of_one_folder_import_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    // Edges between files: `crate::a::b` resolved to the longest module prefix that is a file.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let from = module_path(&src, file);
        let source = non_test_source(file);
        let mut targets: Vec<Vec<String>> = crate_paths(&source);
        // `super::x` from `a/b.rs` is `crate::a::x`.
        for (i, _) in source.match_indices("super::") {
            if i > 0 && source.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = source[i + "super::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if from.len() >= 2 && !name.is_empty() {
                let mut t = from[..from.len() - 1].to_vec();
                t.push(name);
                targets.push(t);
            }
        }
        for mut t in targets {
            while !t.is_empty() && !modules.contains(&t) {
                t.pop();
            }
            // A folder's mod.rs re-exports its files; it is the folder, not an importer.
            if !t.is_empty() && t != from && t.len() > 1 && from.len() > 1 && t[0] == from[0] {
                edges.entry(from.clone()).or_default().insert(t);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut circle: Vec<String> =
                        stack[start..].iter().map(|n| n.join("::")).collect();
                    circle.push(next.join("::"));
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            if let Some(circle) = visit(node, &edges, &mut state, &mut Vec::new()) {
                panic!("import circle: {}", circle.join(" -> "));
            }
        }
    }
}

#[test]
fn no_module_is_too_long() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = non_test_source(f).lines().count();
            (n > MAX_MODULE_LINES)
                .then(|| format!("{}: {n}", f.strip_prefix(&src).unwrap().display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "modules over {MAX_MODULE_LINES} non-test lines:\n{}",
        long.join("\n")
    );
}

/// Every relative link in the repo's Markdown points at a file of the repo.
#[test]
fn markdown_links_resolve_inside_the_repo() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md"), root.join("benches/README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let mut broken = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap().trim();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !doc.parent().unwrap().join(target).exists() {
                broken.push(format!(
                    "{}: {target}",
                    doc.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Tests cross policy windows (cooldown, expiry, deadlines, dwell) by advancing the service's
/// manual clock; a test that still sleeps says, just above, why it needs real time.
#[test]
fn every_sleep_in_the_tests_says_why() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = Vec::new();
    rust_files(&tests, &mut files);
    let needle = ["sleep", "("].concat();
    let mut silent = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.contains(&needle) || line.trim_start().starts_with("//") {
                continue;
            }
            let explained = line.contains("//")
                || lines[i.saturating_sub(2)..i]
                    .iter()
                    .any(|l| l.trim_start().starts_with("//"));
            if !explained {
                silent.push(format!(
                    "{}:{}",
                    file.strip_prefix(&tests).unwrap().display(),
                    i + 1
                ));
            }
        }
    }
    assert!(
        silent.is_empty(),
        "sleeps without a reason:\n{}",
        silent.join("\n")
    );
}
