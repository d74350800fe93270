//! Conditions written in CEL (the Common Expression Language) over one
//! call: `input` (arguments by parameter name), `principal` (`id`,
//! `roles`, `permissions`, `attributes`, `tenant`), `action`, `env`
//! (`env.name`, the deployment environment), `now` (a timestamp) and,
//! after the action ran, `output`.
//!
//! Expressions are checked when they are compiled: a syntax error, a
//! variable other than those, or a field the principal or `env` does not
//! have is an error naming the column, so a typo in a policy file fails
//! at load time rather than silently never matching.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env, Program};
use serde_json::Value;

use crate::policy::PolicyContext;

/// Variables every condition may use.
const ROOTS: [&str; 6] = ["input", "principal", "action", "env", "now", "output"];
/// Fields of `principal`.
const PRINCIPAL_FIELDS: [&str; 5] = ["id", "roles", "permissions", "attributes", "tenant"];
/// Fields of `env`.
const ENV_FIELDS: [&str; 1] = ["name"];

/// Longest expression accepted.
pub const MAX_EXPRESSION_BYTES: usize = 1024;
/// Deepest nesting of brackets accepted.
pub const MAX_NESTING: usize = 32;
/// Deepest expression tree accepted: evaluation recurses once per level,
/// and must fit a 2 MiB thread stack even in a debug build.
pub const MAX_DEPTH: usize = 24;
/// The parser recurses deeply per bracket (over 100 KiB a level in a
/// debug build), so expressions are parsed on a thread of their own with
/// this much stack; compiling happens when policies load, not per call.
const PARSE_STACK_BYTES: usize = 64 << 20;

/// The standard library, built once: building it per evaluation would
/// dominate the cost of a small expression.
static STDLIB: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A condition that could not be compiled or evaluated.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// Not valid CEL.
    #[error("invalid CEL expression `{expression}` at column {column}: {message}")]
    Syntax {
        /// The expression.
        expression: String,
        /// 1-based column inside the expression.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A variable that no call has.
    #[error(
        "expression `{expression}` uses unknown variable `{name}` at column {column} (expected one of: {})",
        ROOTS.join(", ")
    )]
    UnknownVariable {
        /// The expression.
        expression: String,
        /// The variable.
        name: String,
        /// 1-based column inside the expression.
        column: usize,
    },
    /// A field the principal or `env` does not have.
    #[error(
        "expression `{expression}` uses unknown field `{path}` at column {column} (`{root}` has: {known})"
    )]
    UnknownField {
        /// The expression.
        expression: String,
        /// `principal.rol`, `env.stage`...
        path: String,
        /// `principal` or `env`.
        root: String,
        /// The fields it has.
        known: String,
        /// 1-based column inside the expression.
        column: usize,
    },
    /// Longer or more deeply nested than a condition needs to be (the
    /// limits keep the parser and evaluator's recursion bounded).
    #[error("expression is too complex: {reason}")]
    TooComplex {
        /// Which limit it passes.
        reason: String,
    },
    /// `output` in a condition evaluated before the action ran.
    #[error("expression `{expression}` uses `output`, which does not exist before the action runs")]
    OutputBeforeRun {
        /// The expression.
        expression: String,
    },
    /// The expression ran but failed (a missing input field, a type
    /// mismatch) or did not give a boolean.
    #[error("expression `{expression}` could not be evaluated: {message}")]
    Evaluation {
        /// The expression.
        expression: String,
        /// What went wrong.
        message: String,
    },
}

impl ConditionError {
    /// The 1-based column inside the expression, when known.
    pub fn column(&self) -> Option<usize> {
        match self {
            Self::Syntax { column, .. }
            | Self::UnknownVariable { column, .. }
            | Self::UnknownField { column, .. } => Some(*column),
            _ => None,
        }
    }
}

/// A compiled CEL condition; cheap to clone.
#[derive(Clone)]
pub struct Condition {
    source: Arc<str>,
    program: Arc<Program>,
    env_name: Arc<str>,
    uses_output: bool,
    input_fields: Arc<[(String, usize)]>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&&*self.source).finish()
    }
}

impl Condition {
    /// Compiles and checks `source`; `env.name` is `environment`.
    pub fn compile(source: &str, environment: &str) -> Result<Self, ConditionError> {
        check_size(source)?;
        let owned = source.to_owned();
        let parsed = std::thread::Builder::new()
            .name("governor-cel-parse".into())
            .stack_size(PARSE_STACK_BYTES)
            .spawn(move || parse(&owned))
            .map_err(|e| ConditionError::TooComplex {
                reason: format!("no thread to parse it on: {e}"),
            })?
            .join()
            .map_err(|_| ConditionError::TooComplex {
                reason: "the parser failed".into(),
            })??;
        Ok(Self {
            source: source.into(),
            program: Arc::new(parsed.program),
            env_name: environment.into(),
            uses_output: parsed.uses_output,
            input_fields: parsed.input_fields.into(),
        })
    }

    /// Compiles a condition that is evaluated before the action runs, so
    /// it may not use `output`.
    pub fn compile_pre(source: &str, environment: &str) -> Result<Self, ConditionError> {
        let c = Self::compile(source, environment)?;
        if c.uses_output {
            return Err(ConditionError::OutputBeforeRun {
                expression: source.to_owned(),
            });
        }
        Ok(c)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The fields of `input` it reads directly (`input.amount`), each with
    /// its 1-based column; for checking against an input schema.
    pub fn input_fields(&self) -> impl Iterator<Item = (&str, usize)> {
        self.input_fields.iter().map(|(f, c)| (f.as_str(), *c))
    }

    /// Whether it refers to `output`.
    pub fn uses_output(&self) -> bool {
        self.uses_output
    }

    /// Evaluates the condition for one call.
    pub fn evaluate(&self, ctx: &PolicyContext<'_>) -> Result<bool, ConditionError> {
        let principal = serde_json::to_value(ctx.principal).unwrap_or(Value::Null);
        self.evaluate_values(ctx.input, &principal, ctx.action, ctx.output)
    }

    /// Evaluates over explicit values (inputs and principal as JSON).
    pub fn evaluate_values(
        &self,
        input: &Value,
        principal: &Value,
        action: &str,
        output: Option<&Value>,
    ) -> Result<bool, ConditionError> {
        let fail = |message: String| ConditionError::Evaluation {
            expression: self.source.to_string(),
            message,
        };
        let mut context = Context::with_env(Arc::clone(&STDLIB));
        context.add_variable_from_value("input", to_cel(input));
        context.add_variable_from_value("principal", to_cel(&principal_with_defaults(principal)));
        context.add_variable_from_value("action", action.to_owned());
        context.add_variable_from_value(
            "env",
            to_cel(&serde_json::json!({ "name": &*self.env_name })),
        );
        context.add_variable_from_value("now", cel::Value::Timestamp(chrono::Utc::now().into()));
        if let Some(o) = output {
            context.add_variable_from_value("output", to_cel(o));
        }
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(fail(format!(
                "it gave {:?}, not a boolean",
                other.type_of()
            ))),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

/// A parsed and checked expression.
struct Parsed {
    program: Program,
    uses_output: bool,
    input_fields: Vec<(String, usize)>,
}

/// Parses and checks `source`.
fn parse(source: &str) -> Result<Parsed, ConditionError> {
    let program = STDLIB.compile(source).map_err(|e| {
        let first = e.errors.first();
        ConditionError::Syntax {
            expression: source.to_owned(),
            column: first.map_or(1, |p| usize::try_from(p.pos.1).unwrap_or(0) + 1),
            message: first.map_or_else(|| e.to_string(), |p| p.msg.clone()),
        }
    })?;
    let mut check = Check {
        program: &program,
        source,
        bound: Vec::new(),
        uses_output: false,
        depth: 0,
        input_fields: Vec::new(),
    };
    check.expr(program.expression())?;
    let (uses_output, input_fields) = (check.uses_output, check.input_fields);
    Ok(Parsed {
        program,
        uses_output,
        input_fields,
    })
}

/// Refuses expressions whose parse or evaluation could recurse too deeply,
/// before the parser sees them.
fn check_size(source: &str) -> Result<(), ConditionError> {
    let too = |reason: String| Err(ConditionError::TooComplex { reason });
    if source.len() > MAX_EXPRESSION_BYTES {
        return too(format!(
            "{} bytes, at most {MAX_EXPRESSION_BYTES}",
            source.len()
        ));
    }
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if let Some(q) = quote {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, c) if c == q => quote = None,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_NESTING {
        return too(format!(
            "brackets nest {deepest} deep, at most {MAX_NESTING}"
        ));
    }
    Ok(())
}

/// JSON as CEL sees it. Integers become `int` (not `uint`, as serde
/// would make them), so `input.count + 1` works on a JSON `5`.
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => cel::Value::Map(cel::objects::Map {
            map: Arc::new(
                m.iter()
                    .map(|(k, v)| (cel::objects::Key::from(k.as_str()), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

/// The principal as conditions see it: every field present, so
/// `"admin" in principal.roles` works for a principal without roles.
fn principal_with_defaults(principal: &Value) -> Value {
    let mut p = principal.clone();
    if let Value::Object(m) = &mut p {
        for (k, empty) in [
            ("roles", Value::Array(Vec::new())),
            ("permissions", Value::Array(Vec::new())),
            ("attributes", Value::Object(serde_json::Map::new())),
            ("tenant", Value::Null),
        ] {
            m.entry(k).or_insert(empty);
        }
    }
    p
}

/// The static check over a parsed expression.
struct Check<'a> {
    program: &'a Program,
    source: &'a str,
    /// Names bound by comprehensions (`exists(r, ...)`) around this node.
    bound: Vec<String>,
    uses_output: bool,
    /// Levels of the tree above the node being checked.
    depth: usize,
    input_fields: Vec<(String, usize)>,
}

impl Check<'_> {
    fn column(&self, e: &IdedExpr) -> usize {
        self.program
            .source_info()
            .offset_for(e.id)
            .map_or(1, |(start, _)| usize::try_from(start).unwrap_or(0) + 1)
    }

    fn expr(&mut self, e: &IdedExpr) -> Result<(), ConditionError> {
        if self.depth >= MAX_DEPTH {
            return Err(ConditionError::TooComplex {
                reason: format!("the expression tree is more than {MAX_DEPTH} levels deep"),
            });
        }
        self.depth += 1;
        let checked = self.node(e);
        self.depth -= 1;
        checked
    }

    fn node(&mut self, e: &IdedExpr) -> Result<(), ConditionError> {
        match &e.expr {
            Expr::Ident(name) => self.ident(e, name),
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr
                    && !self.bound.contains(root)
                {
                    self.field(e, root, &s.field)?;
                    if root == "input" {
                        let column = self.column(&s.operand);
                        self.input_fields.push((s.field.clone(), column));
                    }
                }
                self.expr(&s.operand)
            }
            Expr::Call(c) => {
                if let Some(t) = &c.target {
                    self.expr(t)?;
                }
                c.args.iter().try_for_each(|a| self.expr(a))
            }
            Expr::Comprehension(c) => {
                self.expr(&c.iter_range)?;
                self.expr(&c.accu_init)?;
                let names = [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)];
                let pushed = names.iter().flatten().count();
                self.bound.extend(names.into_iter().flatten().cloned());
                let r = [&c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .try_for_each(|x| self.expr(x));
                self.bound.truncate(self.bound.len() - pushed);
                r
            }
            Expr::List(l) => l.elements.iter().try_for_each(|x| self.expr(x)),
            Expr::Map(m) => m.entries.iter().try_for_each(|e| self.entry(&e.expr)),
            Expr::Struct(s) => s.entries.iter().try_for_each(|e| self.entry(&e.expr)),
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }

    fn entry(&mut self, entry: &EntryExpr) -> Result<(), ConditionError> {
        match entry {
            EntryExpr::StructField(f) => self.expr(&f.value),
            EntryExpr::MapEntry(m) => {
                self.expr(&m.key)?;
                self.expr(&m.value)
            }
        }
    }

    fn ident(&mut self, e: &IdedExpr, name: &str) -> Result<(), ConditionError> {
        // `@`-names are the parser's own accumulators.
        if name.starts_with('@') || self.bound.iter().any(|b| b == name) {
            return Ok(());
        }
        if name == "output" {
            self.uses_output = true;
        }
        if ROOTS.contains(&name) || is_type_name(name) {
            return Ok(());
        }
        Err(ConditionError::UnknownVariable {
            expression: self.source.to_owned(),
            name: name.to_owned(),
            column: self.column(e),
        })
    }

    fn field(&self, e: &IdedExpr, root: &str, field: &str) -> Result<(), ConditionError> {
        let known: &[&str] = match root {
            "principal" => &PRINCIPAL_FIELDS,
            "env" => &ENV_FIELDS,
            _ => return Ok(()),
        };
        if known.contains(&field) {
            return Ok(());
        }
        Err(ConditionError::UnknownField {
            expression: self.source.to_owned(),
            path: format!("{root}.{field}"),
            root: root.to_owned(),
            known: known.join(", "),
            column: self.column(e),
        })
    }
}

/// CEL's type names, usable as values (`type(x) == int`).
fn is_type_name(name: &str) -> bool {
    static TYPES: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
        [
            "int",
            "uint",
            "double",
            "bool",
            "string",
            "bytes",
            "list",
            "map",
            "null_type",
            "type",
            "timestamp",
            "duration",
        ]
        .into_iter()
        .collect()
    });
    TYPES.contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;
    use crate::policy::test_support::ctx;
    use serde_json::json;

    fn eval(src: &str, input: Value, who: &Principal) -> Result<bool, ConditionError> {
        Condition::compile(src, "production")?.evaluate(&ctx(&input, who))
    }

    #[test]
    fn reads_inputs_principal_env_and_now() {
        let who = Principal::new("alice")
            .with_roles(["finance"])
            .with_attribute("dept", "ops");
        assert_eq!(
            eval("input.amount > 100.0", json!({"amount": 500.0}), &who),
            Ok(true)
        );
        assert_eq!(
            eval("input.amount > 100", json!({"amount": 50}), &who),
            Ok(false)
        );
        assert_eq!(
            eval("'finance' in principal.roles", json!({}), &who),
            Ok(true)
        );
        assert_eq!(
            eval("principal.attributes.dept == 'ops'", json!({}), &who),
            Ok(true)
        );
        assert_eq!(eval("env.name == 'production'", json!({}), &who), Ok(true));
        assert_eq!(
            eval(
                "now.getHours() >= 0 && now.getHours() < 24",
                json!({}),
                &who
            ),
            Ok(true)
        );
        assert_eq!(eval("action == 'transfer'", json!({}), &who), Ok(true));
        assert_eq!(
            eval(
                "principal.roles.exists(r, r.startsWith('fin'))",
                json!({}),
                &who
            ),
            Ok(true)
        );
        // A principal without roles still has the (empty) field.
        assert_eq!(
            eval(
                "'admin' in principal.roles",
                json!({}),
                &Principal::new("x")
            ),
            Ok(false)
        );
    }

    #[test]
    fn mistakes_are_found_when_compiling() {
        let e = Condition::compile("input.amount >", "dev").unwrap_err();
        assert!(matches!(e, ConditionError::Syntax { .. }), "{e}");
        let e = Condition::compile("inptu.amount > 5", "dev").unwrap_err();
        assert!(
            matches!(&e, ConditionError::UnknownVariable { name, column: 1, .. } if name == "inptu"),
            "{e}"
        );
        let e = Condition::compile("'x' in principal.rolez", "dev").unwrap_err();
        assert!(
            matches!(&e, ConditionError::UnknownField { path, .. } if path == "principal.rolez"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("id, roles, permissions, attributes, tenant")
        );
        let e = Condition::compile("env.stage == 'x'", "dev").unwrap_err();
        assert!(matches!(e, ConditionError::UnknownField { .. }));
        let e = Condition::compile_pre("output.ok", "dev").unwrap_err();
        assert!(matches!(e, ConditionError::OutputBeforeRun { .. }));
        assert!(Condition::compile("output.ok", "dev").is_ok());
    }

    #[test]
    fn evaluation_errors_are_typed() {
        let who = Principal::new("a");
        let e = eval("input.missing > 1", json!({}), &who).unwrap_err();
        assert!(matches!(e, ConditionError::Evaluation { .. }), "{e}");
        assert_eq!(
            eval("input.count + 1 == 2", json!({"count": 1}), &who),
            Ok(true)
        );
        let e = eval("input.amount + 1", json!({"amount": 1}), &who).unwrap_err();
        assert!(e.to_string().contains("not a boolean"), "{e}");
    }

    #[test]
    fn deeply_nested_expressions_are_refused_not_a_crash() {
        for depth in [33, 2_000] {
            let deep = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
            let e = Condition::compile(&deep, "dev").unwrap_err();
            assert!(matches!(e, ConditionError::TooComplex { .. }), "{e}");
            let list = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            assert!(Condition::compile(&list, "dev").is_err());
        }
        let nested = format!("{}true{}", "(".repeat(32), ")".repeat(32));
        assert!(Condition::compile(&nested, "dev").is_ok());
        let long = vec!["1"; MAX_EXPRESSION_BYTES / 2 + 1].join("+");
        let e = Condition::compile(&long, "dev").unwrap_err();
        assert!(matches!(e, ConditionError::TooComplex { .. }), "{e}");
        let chain = format!("{} == 1", vec!["1"; 40].join("*"));
        let e = Condition::compile(&chain, "dev").unwrap_err();
        assert!(e.to_string().contains("levels deep"), "{e}");
        // The deepest tree allowed compiles and runs on a 2 MiB stack.
        let chain = format!("{} == 1", vec!["1"; MAX_DEPTH - 2].join("*"));
        let who = Principal::new("a");
        assert_eq!(eval(&chain, json!({}), &who), Ok(true));
    }
}
