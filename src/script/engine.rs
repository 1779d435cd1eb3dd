//! The Rhai engine: built and hardened in one place (every limit here), plus a `Session` that keeps
//! variables and functions across REPL lines.

use super::bridge::Host;
use super::packages;
use super::watchdog::Watchdog;
use rhai::module_resolvers::{FileModuleResolver, ModuleResolversCollection, StaticModuleResolver};
use rhai::{Dynamic, Engine, EvalAltResult, Map, Module, Scope, AST};
use std::path::Path;
use std::rc::Rc;

/// Stdlib modules embedded in the binary: `import "users" as users;`.
pub const STDLIB: &[(&str, &str)] = &[
    ("users", include_str!("../../stdlib/users.rhai")),
    ("report", include_str!("../../stdlib/report.rhai")),
    ("bulk", include_str!("../../stdlib/bulk.rhai")),
];

/// Every limit the engine enforces. Admin scripts walk lists of tens of thousands of users, so the
/// ceilings are generous; what they stop is runaway code (loops, recursion, exploding data).
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_fn_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub max_modules: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 200_000_000,
            max_call_levels: 64,
            max_expr_depth: 128,
            max_fn_expr_depth: 64,
            max_string_size: 16 * 1024 * 1024,
            // Rhai counts these over a whole value, nested parts included: a list of 100,000 users is
            // about 1,000,000 map entries. The cap bounds memory at a few hundred MB.
            max_array_size: 250_000,
            max_map_size: 2_000_000,
            max_modules: 64,
        }
    }
}

/// CPU seconds a script (or one REPL line) may compute, unless the config's `script_cpu_seconds` says
/// otherwise. `max_operations` bounds cheap operations to a few seconds; this bounds the costly ones.
pub const DEFAULT_SCRIPT_CPU_SECONDS: u64 = 60;

/// Heap a script (or one REPL line) may add, in MB, unless the config's `script_memory_mb` says otherwise.
/// A list of 100,000 users takes a few hundred MB; a runaway loop is stopped before the machine is.
pub const DEFAULT_SCRIPT_MEMORY_MB: usize = 1024;

/// Entries a map literal may have. Rhai's parser checks each key against all the earlier ones, and nothing can
/// stop a parse midway, so a 100,000-entry literal took a minute to parse (measured); 10,000 take 0.1 s.
/// Scripts parse with this cap and run with the generous `max_map_size`.
pub const MAX_MAP_LITERAL: usize = 10_000;

fn set_limits(engine: &mut Engine, limits: &Limits) {
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_fn_expr_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_modules(limits.max_modules);
    // `eval` would run text that no review saw; the Rhai book advises turning it off.
    engine.disable_symbol("eval");
}

/// The engine scripts are parsed with: the same limits, and map literals capped at `MAX_MAP_LITERAL`.
fn parser() -> Engine {
    let mut engine = Engine::new();
    set_limits(&mut engine, &Limits { max_map_size: MAX_MAP_LITERAL, ..Limits::default() });
    engine
}

/// Builds the engine with every steward function registered and the stdlib importable. Scripts run without
/// Rhai's data-size limits: with any of them set, Rhai re-measures a whole array (maps inside included) on every
/// push, so building a 40,000-row report took 15 s (measured); the watchdog's heap budget, checked between every
/// two operations, bounds what a script may hold instead. Literals are still capped when parsed (`parser`).
pub fn build(host: Rc<Host>, watchdog: Rc<Watchdog>, script_dir: Option<&Path>) -> Engine {
    let mut engine = Engine::new();
    set_limits(&mut engine, &Limits { max_string_size: 0, max_array_size: 0, max_map_size: 0, ..Limits::default() });
    // The engine calls this between operations, so even `loop {}` stops on Ctrl-C or a deadline.
    engine.on_progress(move |ops| watchdog.check(ops).map(Dynamic::from));
    packages::admin::register(&mut engine, host.clone());
    packages::data::register(&mut engine, host.clone());
    packages::deprovision::register(&mut engine, host.clone());
    packages::membership::register(&mut engine, host.clone());
    packages::audit::register(&mut engine, host);

    let mut stdlib = StaticModuleResolver::new();
    for (name, source) in STDLIB {
        // The stdlib is ours and tested; a failure here is a build bug, reported at use.
        let module = engine
            .compile(*source)
            .map_err(|e| e.to_string())
            .and_then(|ast| Module::eval_ast_as_new(Scope::new(), &ast, &engine).map_err(|e| e.to_string()));
        match module {
            Ok(module) => stdlib.insert(*name, module),
            Err(e) => tracing::error!("stdlib module {name} does not compile: {e}"),
        }
    }
    let mut resolvers = ModuleResolversCollection::new();
    resolvers.push(stdlib);
    let base = script_dir.map(Path::to_path_buf).or_else(|| std::env::current_dir().ok()).unwrap_or_default();
    resolvers.push(BesideTheScript::new(base));
    engine.set_module_resolver(resolvers);
    engine
}

/// Imports a script may make besides the stdlib: `.rhai` files in the script's own directory or below it (the
/// working directory for `eval` and the REPL), never an absolute path, `..`, or a symlink leading out.
struct BesideTheScript {
    base: std::path::PathBuf,
    files: FileModuleResolver,
}

impl BesideTheScript {
    fn new(base: std::path::PathBuf) -> Self {
        let mut files = FileModuleResolver::new();
        files.set_base_path(&base);
        BesideTheScript { base, files }
    }

    fn allowed(&self, path: &str) -> Result<(), String> {
        let asked = Path::new(path);
        let plain = asked.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(format!("import {path:?}: only the stdlib and .rhai files beside the script may be imported"));
        }
        let file = self.base.join(asked).with_extension("rhai");
        match (std::fs::canonicalize(&file), std::fs::canonicalize(&self.base)) {
            (Ok(real), Ok(base)) if !real.starts_with(&base) => {
                Err(format!("import {path:?}: it leads out of the script's directory"))
            }
            _ => Ok(()),
        }
    }
}

impl rhai::ModuleResolver for BesideTheScript {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: rhai::Position,
    ) -> Result<rhai::Shared<Module>, Box<rhai::EvalAltResult>> {
        // The resolver collection accepts only these two error kinds (anything else is a panic in rhai).
        let refused = |why: String| {
            let refused = Box::new(rhai::EvalAltResult::ErrorRuntime(why.into(), pos));
            Box::new(rhai::EvalAltResult::ErrorInModule(path.to_string(), refused, pos))
        };
        self.allowed(path).map_err(refused)?;
        // Pinned like any input: a resume runs the same module or refuses.
        let file = self.base.join(path).with_extension("rhai");
        if let Ok(sha) = crate::inputs::digest_file(&file) {
            crate::inputs::read(&file, &sha).map_err(|e| refused(e.to_string()))?;
        }
        self.files.resolve(engine, source, path, pos)
    }
}

/// An engine plus the state that lives across evaluations (the REPL's variables and functions).
pub struct Session {
    pub engine: Engine,
    parser: Engine,
    pub scope: Scope<'static>,
    functions: AST,
    watchdog: Rc<Watchdog>,
}

impl Session {
    /// `watchdog` is the one `build` gave the engine: each evaluation restarts its clocks.
    pub fn new(engine: Engine, watchdog: Rc<Watchdog>, args: Map) -> Self {
        let mut scope = Scope::new();
        scope.push_constant("ARGS", args);
        Session { engine, parser: parser(), scope, functions: AST::empty(), watchdog }
    }

    /// Compiles and runs `source`, keeping its functions and top-level variables for later lines.
    pub fn eval(&mut self, source: &str, name: Option<&str>) -> Result<Dynamic, Box<EvalAltResult>> {
        let mut ast = self.parser.compile_with_scope(&self.scope, source)?;
        if let Some(n) = name {
            ast.set_source(n);
        }
        let merged = self.functions.merge(&ast);
        self.watchdog.begin();
        let result = self.engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &merged);
        self.watchdog.end();
        let mut functions = merged;
        functions.clear_statements();
        self.functions = functions;
        result
    }

    /// Names of the variables in scope, for completion.
    pub fn variables(&self) -> Vec<String> {
        self.scope.iter_raw().map(|(name, _, _)| name.to_string()).collect()
    }

    /// `name: type = value` for each variable in scope, oldest first, the value cut short (`:vars`).
    pub fn variable_summaries(&self) -> Vec<String> {
        const SHOWN: usize = 50;
        let mut all: Vec<String> = self
            .scope
            .iter_raw()
            .map(|(name, _, value)| {
                let text = match value.read_lock::<super::types::Handle>() {
                    Some(handle) => handle.describe(),
                    None => value.to_string().replace('\n', " "),
                };
                let text = match text.char_indices().nth(SHOWN) {
                    Some((at, _)) => format!("{}…", &text[..at]),
                    None => text,
                };
                let kind = match value.type_name() {
                    t if t.ends_with("Handle") => "handle",
                    t if t.ends_with("RawJson") => "json",
                    t => t.rsplit("::").next().unwrap_or(t),
                };
                format!("{name}: {kind} = {text}")
            })
            .collect();
        // The scope lists the newest first; people read what they defined in order.
        all.reverse();
        all
    }

    /// The variables that hold a handle, with its kind of service, for completion.
    pub fn handles(&self) -> std::collections::HashMap<String, String> {
        self.scope
            .iter_raw()
            .filter_map(|(name, _, value)| {
                let handle = value.read_lock::<super::types::Handle>()?;
                Some((name.to_string(), handle.conn.backend.kind().to_string()))
            })
            .collect()
    }
}
