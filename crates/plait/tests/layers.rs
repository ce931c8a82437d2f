//! The library's top-level modules form the stack that `docs/architecture.md` draws: each
//! imports only its own layer and the layers below, and the imports form no cycle.
//!
//! The check reads the source with `syn`: `use` items, paths in code (`crate::…`,
//! `super::…` that climbs out of the module, `self::…`) and paths inside macro calls
//! (`crate::x` in a `tracing::warn!`, `$crate::x` in a `macro_rules!`). A name that `lib.rs`
//! re-exports counts as the module it re-exports it from. `lib.rs` itself sits above the
//! stack and is not checked. The tests after the first show the check failing on a
//! deliberately introduced back-import, cycle and unplaced module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// One file of the library: its path under `src/` and its text.
struct Source {
    path: String,
    text: String,
}

/// A reference from one top-level module to another.
#[derive(Debug)]
struct Edge {
    from: String,
    to: String,
    file: String,
    line: usize,
    path: String,
}

/// Checks `sources` against the layer table in `doc`; returns the problems, one line each.
fn check(doc: &str, sources: &[Source]) -> Result<Vec<Edge>, Vec<String>> {
    let mut problems = Vec::new();
    let layers = layers_from_doc(doc);
    if layers.is_empty() {
        return Err(vec![
            "docs/architecture.md has no layer table (rows `| N | `module`, … | … |`)".into(),
        ]);
    }
    let modules: BTreeSet<String> = sources
        .iter()
        .filter(|s| s.path != "lib.rs")
        .map(|s| top_of(&s.path))
        .collect();
    for module in &modules {
        if !layers.contains_key(module) {
            problems.push(format!(
                "src/{module}: the module is not placed in docs/architecture.md; add it to the \
                 layer whose modules it uses"
            ));
        }
    }
    for module in layers.keys() {
        if !modules.contains(module) {
            problems.push(format!(
                "docs/architecture.md places `{module}`, which is not a module of src/"
            ));
        }
    }

    let root = match sources.iter().find(|s| s.path == "lib.rs") {
        Some(lib) => match syn::parse_file(&lib.text) {
            Ok(file) => RootNames::of(&file, &modules),
            Err(e) => return Err(vec![format!("src/lib.rs: {e}")]),
        },
        None => return Err(vec!["src/lib.rs is missing".into()]),
    };

    let mut edges = Vec::new();
    for source in sources.iter().filter(|s| s.path != "lib.rs") {
        let file = match syn::parse_file(&source.text) {
            Ok(file) => file,
            Err(e) => {
                let line = e.span().start().line;
                problems.push(format!("src/{}:{line}: does not parse: {e}", source.path));
                continue;
            }
        };
        let mut refs = References {
            scope: module_path_of(&source.path),
            found: Vec::new(),
        };
        refs.visit_file(&file);
        let from = top_of(&source.path);
        for (absolute, line, written) in refs.found {
            match root.module_of(&absolute) {
                Some(Place::Module(to)) if to != from => edges.push(Edge {
                    from: from.clone(),
                    to,
                    file: source.path.clone(),
                    line,
                    path: written,
                }),
                Some(_) => {}
                None => problems.push(format!(
                    "src/{}:{line}: `{written}` names nothing this check can place; name the \
                     module it comes from",
                    source.path
                )),
            }
        }
    }

    for edge in &edges {
        let (Some(&below), Some(&above)) = (layers.get(&edge.from), layers.get(&edge.to)) else {
            continue;
        };
        if above > below {
            problems.push(format!(
                "src/{}:{}: `{}` (layer {below}) uses `{}` from `{}` (layer {above}), a layer \
                 above it: move that code down, or hand the lower layer a hook",
                edge.file, edge.line, edge.from, edge.path, edge.to
            ));
        }
    }
    for cycle in cycles(&edges) {
        let links: Vec<String> = cycle
            .iter()
            .map(|e| {
                format!(
                    "{} -> {} (src/{}:{} `{}`)",
                    e.from, e.to, e.file, e.line, e.path
                )
            })
            .collect();
        problems.push(format!("a cycle among modules: {}", links.join(", ")));
    }

    if problems.is_empty() {
        Ok(edges)
    } else {
        Err(problems)
    }
}

/// The layer table: module name to layer number.
fn layers_from_doc(doc: &str) -> BTreeMap<String, u32> {
    let mut layers = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| 3 | `pool` | … |" splits into ["", "3", "`pool`", "…", ""].
        let Some(layer) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        let Some(names) = cells.get(2) else { continue };
        for name in names.split('`').skip(1).step_by(2) {
            layers.insert(name.to_owned(), layer);
        }
    }
    layers
}

/// `process/child.rs` -> `process`; `error.rs` -> `error`.
fn top_of(path: &str) -> String {
    let first = path.split('/').next().unwrap_or(path);
    first.trim_end_matches(".rs").to_owned()
}

/// `process/child.rs` -> [process, child]; `process/mod.rs` -> [process].
fn module_path_of(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Where a crate-root name leads.
enum Place {
    Module(String),
    /// Outside the library's modules: `plait_macros::task`, `__private`'s re-exports.
    Outside,
}

/// What the crate root defines: its modules, its re-exports and its exported macros.
struct RootNames {
    modules: BTreeSet<String>,
    reexports: BTreeMap<String, Option<String>>,
}

impl RootNames {
    fn of(lib: &syn::File, modules: &BTreeSet<String>) -> RootNames {
        let mut reexports = BTreeMap::new();
        for item in &lib.items {
            match item {
                syn::Item::Use(used) => {
                    let mut leaves = Vec::new();
                    flatten(&used.tree, &mut Vec::new(), &mut leaves);
                    for (path, name) in leaves {
                        let from = path.first().filter(|m| modules.contains(*m)).cloned();
                        reexports.insert(name, from);
                    }
                }
                // `__private` and the README's doctest holder.
                syn::Item::Mod(m) if m.content.is_some() => {
                    reexports.insert(m.ident.to_string(), None);
                }
                syn::Item::Struct(s) => {
                    reexports.insert(s.ident.to_string(), None);
                }
                _ => {}
            }
        }
        RootNames {
            modules: modules.clone(),
            reexports,
        }
    }

    fn module_of(&self, absolute: &[String]) -> Option<Place> {
        let first = absolute.first()?;
        if self.modules.contains(first) {
            return Some(Place::Module(first.clone()));
        }
        match self.reexports.get(first)? {
            Some(module) => Some(Place::Module(module.clone())),
            None => Some(Place::Outside),
        }
    }
}

/// The paths a `use` tree imports, each with the name it binds.
fn flatten(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.to_string());
            out.push((path, n.ident.to_string()));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push((path, r.rename.to_string()));
        }
        syn::UseTree::Glob(_) => {
            let mut path = prefix.clone();
            path.push("*".into());
            out.push((path, "*".into()));
        }
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                flatten(tree, prefix, out);
            }
        }
    }
}

/// Collects every path that leads from the crate root: (absolute path, line, as written).
struct References {
    scope: Vec<String>,
    found: Vec<(Vec<String>, usize, String)>,
}

impl References {
    fn note(&mut self, segments: Vec<String>, span: Span) {
        let written = segments.join("::");
        let absolute = match segments.first().map(String::as_str) {
            Some("crate" | "plait") => segments[1..].to_vec(),
            Some("self") => self.scope.iter().chain(&segments[1..]).cloned().collect(),
            Some("super") => {
                let mut at = self.scope.clone();
                let mut rest = segments.as_slice();
                while rest.first().is_some_and(|s| s == "super") {
                    at.pop();
                    rest = &rest[1..];
                }
                at.extend(rest.iter().cloned());
                at
            }
            _ => return,
        };
        if absolute.is_empty() {
            return;
        }
        self.found.push((absolute, span.start().line, written));
    }

    /// `crate :: name`, `$crate :: name`, `super :: name` inside a macro's tokens.
    fn scan(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, token) in tokens.iter().enumerate() {
            match token {
                TokenTree::Group(group) => self.scan(group.stream()),
                TokenTree::Ident(ident)
                    if matches!(ident.to_string().as_str(), "crate" | "super") =>
                {
                    let mut segments = vec![ident.to_string()];
                    let mut at = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) =
                        (tokens.get(at), tokens.get(at + 1))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        match tokens.get(at + 2) {
                            Some(TokenTree::Ident(next)) => segments.push(next.to_string()),
                            _ => break,
                        }
                        at += 3;
                    }
                    if segments.len() > 1 {
                        self.note(segments, ident.span());
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for References {
    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        self.scope.push(module.ident.to_string());
        visit::visit_item_mod(self, module);
        self.scope.pop();
    }

    fn visit_item_use(&mut self, used: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        flatten(&used.tree, &mut Vec::new(), &mut leaves);
        for (path, _) in leaves {
            self.note(path, syn::spanned::Spanned::span(&used.tree));
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.segments.len() > 1 {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.note(segments, path.segments[0].ident.span());
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }

    // `pub(in crate::x)` says who may see an item, not what it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}
}

/// The cycles among modules: for each set of modules that reach one another, the shortest
/// walk around it, as its edges.
fn cycles(edges: &[Edge]) -> Vec<Vec<&Edge>> {
    let mut first_edge: BTreeMap<(&str, &str), &Edge> = BTreeMap::new();
    for edge in edges {
        first_edge.entry((&edge.from, &edge.to)).or_insert(edge);
    }
    // (the modules in one knot, the shortest walk found around it)
    let mut knots: Vec<(BTreeSet<&str>, Vec<&str>)> = Vec::new();
    for &(from, to) in first_edge.keys() {
        // The edge from -> to closes a cycle when `to` leads back to `from`.
        let Some(back) = shortest_walk(&first_edge, to, from) else {
            continue;
        };
        let mut walk = vec![from];
        walk.extend(back);
        let mut members: BTreeSet<&str> = walk.iter().copied().collect();
        let mut shortest = walk;
        knots.retain(|(others, their_walk)| {
            if others.is_disjoint(&members) {
                return true;
            }
            members.extend(others);
            if their_walk.len() < shortest.len() {
                shortest = their_walk.clone();
            }
            false
        });
        knots.push((members, shortest));
    }
    knots
        .into_iter()
        .map(|(_, walk)| {
            walk.windows(2)
                .map(|pair| first_edge[&(pair[0], pair[1])])
                .collect()
        })
        .collect()
}

/// The shortest walk from `from` to `to` along `links`, both ends included.
fn shortest_walk<'a>(
    links: &BTreeMap<(&'a str, &'a str), &Edge>,
    from: &'a str,
    to: &'a str,
) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut frontier = vec![from];
    while !frontier.is_empty() {
        let mut further = Vec::new();
        for m in frontier {
            for &(_, n) in links.keys().filter(|(f, _)| *f == m) {
                if n == from || came_from.contains_key(n) {
                    continue;
                }
                came_from.insert(n, m);
                further.push(n);
            }
        }
        if came_from.contains_key(to) {
            let mut walk = vec![to];
            while let Some(&back) = came_from.get(walk.last().unwrap()) {
                walk.push(back);
                if back == from {
                    break;
                }
            }
            walk.reverse();
            return Some(walk);
        }
        frontier = further;
    }
    None
}

fn library_sources() -> Vec<Source> {
    fn walk(dir: &Path, under: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, under, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(under).unwrap();
                out.push(Source {
                    path: relative.to_string_lossy().replace('\\', "/"),
                    text: std::fs::read_to_string(&path).unwrap(),
                });
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&src, &src, &mut out);
    out
}

fn architecture_doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/architecture.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The library with `addition` appended to its file at `path`; and the line it starts on.
fn library_with(path: &str, addition: &str) -> (Vec<Source>, usize) {
    let mut sources = library_sources();
    let source = sources
        .iter_mut()
        .find(|s| s.path == path)
        .unwrap_or_else(|| panic!("src/{path} is not a file of the library"));
    let line = source.text.lines().count() + 1;
    source.text.push_str(addition);
    (sources, line)
}

fn problems(doc: &str, sources: &[Source]) -> Vec<String> {
    match check(doc, sources) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

#[test]
fn the_library_is_the_stack_docs_architecture_draws() {
    let edges = check(&architecture_doc(), &library_sources())
        .unwrap_or_else(|problems| panic!("the stack is broken:\n{}", problems.join("\n")));
    // The check sees the imports it judges: the runtime uses the task core, the graph the
    // runtime, the pool the strands' state.
    for (from, to) in [
        ("runtime", "task"),
        ("graph", "runtime"),
        ("pool", "strand"),
    ] {
        assert!(
            edges.iter().any(|e| e.from == from && e.to == to),
            "no {from} -> {to} edge found: the check reads nothing"
        );
    }
}

#[test]
fn a_back_import_is_named_with_its_file_and_line() {
    let (sources, line) = library_with("strand/state.rs", "\nuse crate::runtime::Runtime;\n");
    let problems = problems(&architecture_doc(), &sources);
    let expected = format!("src/strand/state.rs:{}", line + 1);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&expected) && p.contains("`crate::runtime::Runtime`")),
        "expected a problem at {expected}, got {problems:#?}"
    );
    // strand -> runtime closes a cycle too: runtime uses strand.
    assert!(problems.iter().any(|p| p.starts_with("a cycle")));
}

#[test]
fn a_back_reference_through_super_a_reexport_or_a_macro_is_caught() {
    let cases = [
        (
            "pool/sleep.rs",
            "\nfn f() { super::super::graph::Graph::<()>::new(); }\n",
            "super::super::graph::Graph",
        ),
        (
            "task/mod.rs",
            "\nfn f(_: crate::Runtime) {}\n",
            "crate::Runtime",
        ),
        (
            "id.rs",
            "\nfn f() { tracing::warn!(\"{:?}\", crate::process::init()); }\n",
            "crate::process::init",
        ),
    ];
    for (file, addition, named) in cases {
        let (sources, _) = library_with(file, addition);
        let problems = problems(&architecture_doc(), &sources);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("src/{file}:")) && p.contains(named)),
            "{file}: expected `{named}` refused, got {problems:#?}"
        );
    }
}

#[test]
fn a_cycle_inside_one_layer_is_named() {
    let doc = "| layer | modules | what |\n|---|---|---|\n| 1 | `a`, `b` | two |\n";
    let sources = [
        Source {
            path: "lib.rs".into(),
            text: "mod a;\nmod b;\n".into(),
        },
        Source {
            path: "a.rs".into(),
            text: "use crate::b::B;\npub struct A;\n".into(),
        },
        Source {
            path: "b/mod.rs".into(),
            text: "pub struct B;\nfn f() { let _ = crate::a::A; }\n".into(),
        },
    ];
    let problems = problems(doc, &sources);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("a -> b (src/a.rs:1 `crate::b::B`)")
            && problems[0].contains("b -> a (src/b/mod.rs:2 `crate::a::A`)"),
        "{problems:#?}"
    );
}

#[test]
fn a_module_the_table_does_not_place_is_refused() {
    let mut sources = library_sources();
    sources.push(Source {
        path: "queue/mod.rs".into(),
        text: "pub struct Queue;\n".into(),
    });
    let problems = problems(&architecture_doc(), &sources);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("src/queue: the module is not placed")),
        "{problems:#?}"
    );
}
