//! CEL expressions, parsed and evaluated by the `cel` crate, with the cost bound that CEL
//! implementations leave to their hosts.
//!
//! At load, an expression is at most [`MAX_SOURCE_LEN`] bytes, nests at most [`MAX_DEPTH`]
//! deep, names only the rules' variables, and has no comprehension (`all`, `exists`,
//! `exists_one`, `map`, `filter`) inside another's predicate. Its tree is then rewritten so that
//! every operation whose work grows with its operands goes through a function of this module
//! that charges a budget before the work is done: concatenation, equality, `in`, comparisons,
//! values copied into lists and maps, the arguments of functions, and each comprehension (its
//! range, times its predicate's size). A comprehension over more than [`MAX_ELEMENTS`]
//! elements, or whose predicate reads `body` other than through its own variable, is an
//! evaluation error. The budget ([`BUDGET`] units) is spent by one evaluation; its exhaustion
//! is an evaluation error too.

use std::cell::Cell;
use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, operators,
};
use cel::common::types::{
    self, CelBool, CelBytes, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString,
    CelUInt,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, Value};

use super::body::{Json, Number, Paths};
use super::{Facts, RuleError};

/// The longest expression accepted, in bytes.
pub(crate) const MAX_SOURCE_LEN: usize = 4096;

/// How deep an expression's tree may nest.
pub(crate) const MAX_DEPTH: usize = 48;

/// The most elements a comprehension may run over.
pub(crate) const MAX_ELEMENTS: usize = 10_000;

/// What one evaluation may spend: a unit is one value visited, one node of a predicate run
/// once, or sixteen bytes copied or compared. A unit takes about 50 to 100 ns in a release
/// build (the most for copies of maps), so the budget is 10 to 25 ms of work; an `exists` over
/// 10 000 small objects takes about 130 000.
pub(crate) const BUDGET: i64 = 250_000;

/// The variables, and the type names an expression may use as values (`type(x) == string`).
const NAMES: [&str; 5] = ["body", "action", "source", "deliveryId", "headers"];
const TYPE_NAMES: [&str; 11] = [
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
];

// The functions the rewritten tree calls. `@` cannot be written in CEL, so no expression can
// call them itself.
const ADD: &str = "@rules_add";
const EQUALS: &str = "@rules_equals";
const NOT_EQUALS: &str = "@rules_not_equals";
const IN: &str = "@rules_in";
const LESS: &str = "@rules_less";
const LESS_EQUALS: &str = "@rules_less_equals";
const GREATER: &str = "@rules_greater";
const GREATER_EQUALS: &str = "@rules_greater_equals";
const OWN: &str = "@rules_own";
const TOUCH: &str = "@rules_touch";
const RANGE: &str = "@rules_range";
const RANGE_READING_BODY: &str = "@rules_range_reading_body";
/// The accumulator the standard macros name.
const ACCUMULATOR: &str = "@result";

/// The standard library and macros, without optional values, plus this module's functions.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib().with_optional_support(false);
    let dyn_type = || types::DYN_TYPE;
    let declarations: [(&str, usize, cel::common::functions::Function); 12] = [
        (ADD, 2, add),
        (EQUALS, 2, equals),
        (NOT_EQUALS, 2, not_equals),
        (IN, 2, contains),
        (LESS, 2, less),
        (LESS_EQUALS, 2, less_equals),
        (GREATER, 2, greater),
        (GREATER_EQUALS, 2, greater_equals),
        (OWN, 1, own),
        (TOUCH, 1, touch),
        (RANGE, 2, range),
        (RANGE_READING_BODY, 1, range_reading_body),
    ];
    for (name, arity, function) in declarations {
        env.add_overload(
            name,
            name,
            (0..arity).map(|_| dyn_type()).collect(),
            function,
        )
        .expect("the rules' functions are declared once");
    }
    Arc::new(env)
});

/// Which variables an expression reads: the others need not be built for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Uses {
    pub(crate) body: bool,
    pub(crate) headers: bool,
}

/// A compiled expression: the rewritten tree.
#[derive(Debug)]
pub(crate) struct Expression {
    tree: IdedExpr,
    uses: Uses,
    /// The parts of the body it reads.
    paths: Paths,
}

impl Expression {
    /// Parses and checks `text`, and rewrites it with the budget's charges.
    ///
    /// The `cel` parser recurses deeply per level of parentheses (more than 100 KiB of stack
    /// per level in a debug build), so parsing runs on a thread of its own with a stack that
    /// the parser's own limit of nesting cannot exhaust.
    pub(crate) fn compile(text: &str) -> Result<Expression, RuleError> {
        if text.len() > MAX_SOURCE_LEN {
            return Err(RuleError::new(format!(
                "the expression is {} bytes long, more than {MAX_SOURCE_LEN}",
                text.len()
            )));
        }
        let text = text.to_owned();
        super::with_deep_stack(move || compile_on_this_thread(&text))
    }

    pub(crate) fn uses(&self) -> Uses {
        self.uses
    }

    pub(crate) fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Evaluates the expression over `variables`; `Err` says why it failed.
    pub(crate) fn evaluate<'v, T>(
        &self,
        variables: &'v Variables<'v>,
        read: impl FnOnce(&(dyn Val + 'v)) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        context.set_variable_resolver(variables);
        REMAINING.set(BUDGET);
        let value = Value::resolve_val(&self.tree, &context).map_err(|error| describe(&error))?;
        read(value.as_ref())
    }
}

fn compile_on_this_thread(text: &str) -> Result<Expression, RuleError> {
    let (mut tree, source_info) = ENV
        .parser()
        .parse_with_source_info(text)
        .map_err(|errors| {
            let first = errors.errors.first();
            let message =
                first.map_or_else(|| "syntax error".to_owned(), |error| error.msg.clone());
            match first.map(|error| error.pos) {
                // The parser counts lines from 1 and columns from 0.
                Some((line, column)) if line >= 1 && column >= 0 => {
                    RuleError::at(message, line as u32, column as u32 + 1)
                }
                _ => RuleError::new(message),
            }
        })?;
    let mut rewriter = Rewriter {
        scopes: Vec::new(),
        uses: Uses::default(),
        in_predicate: false,
    };
    rewriter
        .rewrite(&mut tree, 1)
        .map_err(|refusal| match source_info.offset_for(refusal.id) {
            Some((start, _)) => {
                let (line, column) = super::line_and_column(text, start as usize);
                RuleError::at(refusal.message, line, column)
            }
            None => RuleError::new(refusal.message),
        })?;
    let mut paths = Paths::default();
    collect_paths(&tree, &mut paths);
    Ok(Expression {
        tree,
        uses: rewriter.uses,
        paths,
    })
}

/// Adds the parts of `body` that `node` reads: the value at the end of each chain of field
/// selections that starts at `body`, whole; `body` itself whole when it is used otherwise.
/// (No comprehension may bind `body`, so every `body` is the variable.)
fn collect_paths(node: &IdedExpr, paths: &mut Paths) {
    match &node.expr {
        Expr::Select(select) => {
            let mut fields = vec![select.field.as_str()];
            let mut operand = &*select.operand;
            while let Expr::Select(inner) = &operand.expr {
                fields.push(inner.field.as_str());
                operand = &inner.operand;
            }
            match &operand.expr {
                Expr::Ident(name) if name == "body" => paths.insert(fields.into_iter().rev()),
                _ => collect_paths(operand, paths),
            }
        }
        Expr::Ident(name) if name == "body" => paths.insert([]),
        _ => {
            for child in children(node) {
                collect_paths(child, paths);
            }
        }
    }
}

/// Why an expression is refused at load, and the node that says so.
struct Refusal {
    id: u64,
    message: String,
}

struct Rewriter {
    /// The names that comprehensions bind around the node being rewritten.
    scopes: Vec<String>,
    uses: Uses,
    /// Inside a comprehension's predicate (its condition, step or result).
    in_predicate: bool,
}

impl Rewriter {
    fn rewrite(&mut self, node: &mut IdedExpr, depth: usize) -> Result<(), Refusal> {
        let id = node.id;
        if depth > MAX_DEPTH {
            return Err(Refusal {
                id,
                message: format!("the expression nests more than {MAX_DEPTH} levels deep"),
            });
        }
        let depth = depth + 1;
        match &mut node.expr {
            Expr::Ident(name) => {
                if !self.scopes.iter().any(|bound| bound == name) {
                    match name.as_str() {
                        "body" => self.uses.body = true,
                        "headers" => self.uses.headers = true,
                        name if NAMES.contains(&name) || TYPE_NAMES.contains(&name) => {}
                        _ => {
                            return Err(Refusal {
                                id,
                                message: format!(
                                    "unknown name `{name}`: the variables are body, action, \
                                     source, deliveryId and headers"
                                ),
                            });
                        }
                    }
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
            Expr::Select(select) => self.rewrite(&mut select.operand, depth)?,
            Expr::List(list) => {
                for element in &mut list.elements {
                    self.rewrite(element, depth)?;
                    wrap(element, OWN);
                }
            }
            Expr::Map(map) => {
                for entry in &mut map.entries {
                    match &mut entry.expr {
                        EntryExpr::MapEntry(entry) => {
                            self.rewrite(&mut entry.key, depth)?;
                            self.rewrite(&mut entry.value, depth)?;
                            wrap(&mut entry.value, OWN);
                        }
                        EntryExpr::StructField(field) => self.rewrite(&mut field.value, depth)?,
                    }
                }
            }
            Expr::Struct(object) => {
                for entry in &mut object.entries {
                    match &mut entry.expr {
                        EntryExpr::MapEntry(entry) => {
                            self.rewrite(&mut entry.key, depth)?;
                            self.rewrite(&mut entry.value, depth)?;
                        }
                        EntryExpr::StructField(field) => self.rewrite(&mut field.value, depth)?,
                    }
                }
            }
            Expr::Call(call) => self.call(call, depth)?,
            Expr::Comprehension(comprehension) => {
                if self.in_predicate {
                    return Err(Refusal {
                        id,
                        message: "a comprehension inside another's predicate: all, exists, \
                                  exists_one, map and filter may not be nested"
                            .to_owned(),
                    });
                }
                self.comprehension(comprehension, depth)?;
            }
        }
        Ok(())
    }

    fn call(&mut self, call: &mut CallExpr, depth: usize) -> Result<(), Refusal> {
        // The step of `map` and `filter`: `@result + [element]`. The list stays a list literal,
        // which the interpreter appends in place; the element is charged when copied in.
        if call.func_name == operators::ADD
            && matches!(call.args.first(), Some(IdedExpr { expr: Expr::Ident(name), .. }) if name == ACCUMULATOR)
        {
            if let Some(IdedExpr {
                expr: Expr::List(list),
                ..
            }) = call.args.get_mut(1)
            {
                for element in &mut list.elements {
                    self.rewrite(element, depth)?;
                    wrap(element, OWN);
                }
            } else {
                for argument in &mut call.args {
                    self.rewrite(argument, depth)?;
                }
            }
            return Ok(());
        }
        if let Some(target) = &mut call.target {
            self.rewrite(target, depth)?;
        }
        for argument in &mut call.args {
            self.rewrite(argument, depth)?;
        }
        match call.func_name.as_str() {
            operators::ADD => call.func_name = ADD.to_owned(),
            operators::EQUALS => call.func_name = EQUALS.to_owned(),
            operators::NOT_EQUALS => call.func_name = NOT_EQUALS.to_owned(),
            operators::IN => call.func_name = IN.to_owned(),
            operators::LESS => call.func_name = LESS.to_owned(),
            operators::LESS_EQUALS => call.func_name = LESS_EQUALS.to_owned(),
            operators::GREATER => call.func_name = GREATER.to_owned(),
            operators::GREATER_EQUALS => call.func_name = GREATER_EQUALS.to_owned(),
            // Other operators take constant time.
            name if name.starts_with(['_', '@', '!', '-']) => {}
            // A function: its work grows with its arguments and its target at most.
            _ => {
                call.args.iter_mut().for_each(|a| wrap(a, TOUCH));
                if let Some(target) = &mut call.target
                    && !matches!(target.expr, Expr::Ident(_))
                {
                    wrap(target, TOUCH);
                }
            }
        }
        Ok(())
    }

    fn comprehension(
        &mut self,
        comprehension: &mut ComprehensionExpr,
        depth: usize,
    ) -> Result<(), Refusal> {
        // A chained comprehension (`body.a.map(x, x.b).all(y, y > 0)`) is in the range, not
        // the predicate: its cost adds to this one's instead of multiplying it.
        self.rewrite(&mut comprehension.iter_range, depth)?;
        self.rewrite(&mut comprehension.accu_init, depth)?;
        let bound = [
            Some(comprehension.iter_var.clone()),
            comprehension.iter_var2.clone(),
            Some(comprehension.accu_var.clone()),
        ];
        if let Some(name) = bound
            .iter()
            .flatten()
            .find(|name| NAMES.contains(&name.as_str()))
        {
            return Err(Refusal {
                id: comprehension.iter_range.id,
                message: format!("a comprehension's variable may not be named `{name}`"),
            });
        }
        let before = self.scopes.len();
        self.scopes.extend(bound.into_iter().flatten());
        self.in_predicate = true;
        let predicate = [
            &mut comprehension.loop_cond,
            &mut comprehension.loop_step,
            &mut comprehension.result,
        ];
        let mut outcome = Ok(());
        for part in predicate {
            outcome = outcome.and_then(|()| self.rewrite(part, depth));
        }
        // The predicate's own nodes: the step less the accumulator's operator and name.
        let size = count_nodes(&comprehension.loop_step)
            .saturating_sub(2)
            .max(1);
        self.in_predicate = false;
        self.scopes.truncate(before);
        outcome?;
        let reads_body = [
            &comprehension.loop_cond,
            &comprehension.loop_step,
            &comprehension.result,
        ]
        .into_iter()
        .any(names_body);
        let range = std::mem::take(&mut comprehension.iter_range);
        let id = range.id;
        let (name, args) = if reads_body {
            (RANGE_READING_BODY, vec![range])
        } else {
            let weight = IdedExpr {
                id,
                expr: Expr::Literal(LiteralValue::Int(CelInt::from(size as i64))),
            };
            (RANGE, vec![range, weight])
        };
        comprehension.iter_range = IdedExpr {
            id,
            expr: Expr::Call(CallExpr {
                func_name: name.to_owned(),
                target: None,
                args,
            }),
        };
        Ok(())
    }
}

/// Wraps `node` in a call to `function`, unless it is a literal, whose cost is its text's.
fn wrap(node: &mut IdedExpr, function: &str) {
    if matches!(node.expr, Expr::Literal(_)) {
        return;
    }
    let inner = std::mem::take(node);
    *node = IdedExpr {
        id: inner.id,
        expr: Expr::Call(CallExpr {
            func_name: function.to_owned(),
            target: None,
            args: vec![inner],
        }),
    };
}

fn children(node: &IdedExpr) -> Vec<&IdedExpr> {
    match &node.expr {
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Expr::Select(select) => vec![&select.operand],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map
            .entries
            .iter()
            .flat_map(|entry| match &entry.expr {
                EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
                EntryExpr::StructField(field) => vec![&field.value],
            })
            .collect(),
        Expr::Struct(object) => object
            .entries
            .iter()
            .flat_map(|entry| match &entry.expr {
                EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
                EntryExpr::StructField(field) => vec![&field.value],
            })
            .collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn count_nodes(node: &IdedExpr) -> usize {
    1 + children(node).into_iter().map(count_nodes).sum::<usize>()
}

/// Whether the tree names `body` (no comprehension may bind that name).
fn names_body(node: &IdedExpr) -> bool {
    matches!(&node.expr, Expr::Ident(name) if name == "body")
        || children(node).into_iter().any(names_body)
}

/// An evaluation error as a sentence.
fn describe(error: &ExecutionError) -> String {
    match error {
        ExecutionError::FunctionError { function, message } if function.starts_with('@') => {
            message.clone()
        }
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        other => other.to_string(),
    }
}

// The budget of the evaluation running on this thread. Evaluations run to completion on the
// thread that starts them, one at a time.
thread_local! {
    static REMAINING: Cell<i64> = const { Cell::new(0) };
}

fn charge(units: u64) -> Result<(), ExecutionError> {
    let remaining = REMAINING.get() - i64::try_from(units).unwrap_or(i64::MAX);
    REMAINING.set(remaining);
    if remaining < 0 {
        Err(budget_error(format!(
            "the expression would take more than its budget of {BUDGET} steps"
        )))
    } else {
        Ok(())
    }
}

fn budget_error(message: String) -> ExecutionError {
    ExecutionError::function_error("@rules", message)
}

/// What copying or walking `value` whole costs, counted no further than `limit`.
fn weigh(value: &dyn Val, limit: u64) -> u64 {
    let mut total = 1;
    if let Some(list) = value.downcast_ref::<CelList<'_>>() {
        for element in list.inner() {
            total += weigh(element.as_ref(), limit.saturating_sub(total));
            if total > limit {
                break;
            }
        }
    } else if let Some(map) = value.downcast_ref::<CelMap<'_>>() {
        for (key, element) in map.inner() {
            total += 1 + weigh_key(key) + weigh(element.as_ref(), limit.saturating_sub(total));
            if total > limit {
                break;
            }
        }
    } else {
        total = shallow_weight(value);
    }
    total
}

fn weigh_key(key: &CelMapKey<'_>) -> u64 {
    match key {
        CelMapKey::String(text) => (text.inner().len() / 16) as u64,
        _ => 0,
    }
}

/// What reading `value`'s own bytes or entries costs, without walking into them.
fn shallow_weight(value: &dyn Val) -> u64 {
    let len = if let Some(text) = value.downcast_ref::<CelString<'_>>() {
        text.inner().len() / 16
    } else if let Some(bytes) = value.downcast_ref::<CelBytes<'_>>() {
        bytes.inner().len() / 16
    } else if let Some(list) = value.downcast_ref::<CelList<'_>>() {
        list.inner().len()
    } else if let Some(map) = value.downcast_ref::<CelMap<'_>>() {
        map.inner().len()
    } else {
        0
    };
    1 + len as u64
}

fn remaining() -> u64 {
    REMAINING.get().max(0) as u64
}

fn no_overload(name: &str, args: &[CowVal<'_, '_>]) -> ExecutionError {
    ExecutionError::no_such_overload(
        name,
        args.iter()
            .map(|arg| arg.get_type().name().to_owned())
            .collect(),
    )
}

fn boolean<'b, 'v>(value: bool) -> CowVal<'b, 'v> {
    CowVal::owned(CelBool::from(value))
}

fn add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (lhs, rhs) = (&args[0], &args[1]);
    let lists = lhs.downcast_ref::<CelList<'_>>().is_some();
    let cost = if lists {
        // Both lists' elements are copied into the new one.
        weigh(lhs.as_ref(), remaining()) + weigh(rhs.as_ref(), remaining())
    } else {
        shallow_weight(lhs.as_ref()) + shallow_weight(rhs.as_ref())
    };
    charge(cost)?;
    let adder = lhs
        .as_adder()
        .ok_or_else(|| no_overload(operators::ADD, &args))?;
    Ok(CowVal::Owned(adder.add(rhs.as_ref())?.into_owned()))
}

fn equality_cost(args: &[CowVal<'_, '_>]) -> u64 {
    let limit = remaining();
    weigh(args[0].as_ref(), limit).min(weigh(args[1].as_ref(), limit))
}

fn equals<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    charge(equality_cost(&args))?;
    Ok(boolean(args[0] == args[1]))
}

fn not_equals<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    charge(equality_cost(&args))?;
    Ok(boolean(args[0] != args[1]))
}

fn contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (needle, container) = (&args[0], &args[1]);
    let cost = if container.downcast_ref::<CelList<'_>>().is_some() {
        weigh(container.as_ref(), remaining())
    } else {
        shallow_weight(needle.as_ref())
    };
    charge(cost)?;
    let found = container
        .as_container()
        .ok_or_else(|| no_overload("in", &args))?
        .contains(needle.as_ref())
        .map_err(|_| no_overload("in", &args))?;
    Ok(boolean(found))
}

/// How `args[0]` compares with `args[1]`, as the `operator` of CEL compares them, charged for
/// both operands' bytes. (CEL's own operators describe a possible error before comparing.)
fn compare(operator: &str, args: &[CowVal<'_, '_>]) -> Result<std::cmp::Ordering, ExecutionError> {
    let (lhs, rhs) = (args[0].as_ref(), args[1].as_ref());
    charge(shallow_weight(lhs) + shallow_weight(rhs))?;
    lhs.as_comparer()
        .ok_or_else(|| no_overload(operator, args))?
        .compare(rhs)
        .map_err(|error| match error {
            ExecutionError::NoSuchOverload(_)
            | ExecutionError::ValuesNotComparable(_, _)
            | ExecutionError::UnsupportedKeyType(_)
            | ExecutionError::UnexpectedType { .. } => no_overload(operator, args),
            error => error,
        })
}

fn less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(boolean(compare(operators::LESS, &args)?.is_lt()))
}

fn less_equals<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(boolean(compare(operators::LESS_EQUALS, &args)?.is_le()))
}

fn greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(boolean(compare(operators::GREATER, &args)?.is_gt()))
}

fn greater_equals<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(boolean(compare(operators::GREATER_EQUALS, &args)?.is_ge()))
}

fn own<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let value = args.swap_remove(0);
    // A borrowed value is copied where it goes; an owned one is moved.
    let cost = match &value {
        CowVal::Borrowed(value) => weigh(*value, remaining()),
        CowVal::Owned(_) => 1,
    };
    charge(cost)?;
    Ok(value)
}

fn touch<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let value = args.swap_remove(0);
    charge(shallow_weight(value.as_ref()))?;
    Ok(value)
}

fn range<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let weight = args[1]
        .downcast_ref::<CelInt>()
        .map_or(1, |weight| (*weight.inner()).max(1) as u64);
    let range = args.swap_remove(0);
    let count = if let Some(list) = range.downcast_ref::<CelList<'_>>() {
        list.inner().len()
    } else if let Some(map) = range.downcast_ref::<CelMap<'_>>() {
        map.inner().len()
    } else {
        // Not iterable: the comprehension says so.
        return Ok(range);
    };
    if count > MAX_ELEMENTS {
        return Err(budget_error(format!(
            "a comprehension over {count} elements: at most {MAX_ELEMENTS}"
        )));
    }
    // Each element is copied into the comprehension's variable, then the predicate runs.
    charge(weigh(range.as_ref(), remaining()))?;
    charge(count as u64 * weight)?;
    Ok(range)
}

fn range_reading_body<'b, 'v>(
    _args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Err(budget_error(
        "a comprehension whose predicate reads `body`: read each element through the \
         comprehension's own variable"
            .to_owned(),
    ))
}

/// The values an expression reads, built once per delivery and borrowed by every evaluation.
pub(crate) struct Variables<'v> {
    body: Box<dyn Val + 'v>,
    action: Box<dyn Val + 'v>,
    source: CelString<'v>,
    delivery_id: Box<dyn Val + 'v>,
    headers: Box<dyn Val + 'v>,
}

impl fmt::Debug for Variables<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Variables").finish_non_exhaustive()
    }
}

impl<'v> Variables<'v> {
    /// The variables; `body` and `headers` are built only when some expression reads them.
    pub(crate) fn new(body: Option<&'v Json<'v>>, facts: &'v Facts<'v>, uses: Uses) -> Self {
        let text = |text: Option<&'v str>| -> Box<dyn Val + 'v> {
            match text {
                Some(text) => Box::new(CelString::from(text)),
                None => Box::new(CelNull),
            }
        };
        let headers: Box<dyn Val + 'v> = if uses.headers {
            let map = facts
                .headers()
                .map(|(name, value)| {
                    (
                        CelMapKey::from(name),
                        Box::new(CelString::from(value)) as Box<dyn Val>,
                    )
                })
                .collect::<std::collections::HashMap<_, _>>();
            Box::new(CelMap::from(map))
        } else {
            Box::new(CelNull)
        };
        Variables {
            body: match body {
                Some(body) if uses.body => to_val(body),
                _ => Box::new(CelNull),
            },
            action: text(facts.action),
            source: CelString::from(facts.source.as_str()),
            delivery_id: text(facts.delivery_id),
            headers,
        }
    }
}

impl VariableResolver for Variables<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value: &'b (dyn Val + 'b) = match variable {
            "body" => self.body.as_ref(),
            "action" => self.action.as_ref(),
            "source" => &self.source,
            "deliveryId" => self.delivery_id.as_ref(),
            "headers" => self.headers.as_ref(),
            _ => return None,
        };
        Some(CowVal::Borrowed(value))
    }
}

/// The CEL value of a JSON value, borrowing its strings.
fn to_val<'v>(json: &'v Json<'v>) -> Box<dyn Val + 'v> {
    match json {
        Json::Null => Box::new(CelNull),
        Json::Bool(value) => Box::new(CelBool::from(*value)),
        Json::Number(text) => match Number::parse(text) {
            Number::Int(value) => Box::new(CelInt::from(value)),
            Number::Uint(value) => Box::new(CelUInt::from(value)),
            Number::Double(value) => Box::new(CelDouble::from(value)),
        },
        Json::String(text) => Box::new(CelString::from(&**text)),
        Json::Array(elements) => Box::new(CelList::from(
            elements.iter().map(to_val).collect::<Vec<_>>(),
        )),
        Json::Object(members) => Box::new(CelMap::from(
            members
                .iter()
                .map(|(key, value)| (CelMapKey::from(&**key), to_val(value)))
                .collect::<std::collections::HashMap<_, _>>(),
        )),
    }
}

/// Writes `value` as JSON into `out`, refusing what JSON cannot hold and stopping once `out`
/// passes `limit` bytes.
pub(crate) fn write_json(value: &dyn Val, out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    if out.len() > limit {
        return Err(format!(
            "the input is larger than the limit of {limit} bytes"
        ));
    }
    if value.downcast_ref::<CelNull>().is_some() {
        out.extend_from_slice(b"null");
    } else if let Some(value) = value.downcast_ref::<CelBool>() {
        out.extend_from_slice(if *value.inner() { b"true" } else { b"false" });
    } else if let Some(value) = value.downcast_ref::<CelInt>() {
        out.extend_from_slice(value.inner().to_string().as_bytes());
    } else if let Some(value) = value.downcast_ref::<CelUInt>() {
        out.extend_from_slice(value.inner().to_string().as_bytes());
    } else if let Some(value) = value.downcast_ref::<CelDouble>() {
        let number = *value.inner();
        if !number.is_finite() {
            return Err(format!(
                "the input would hold {number}, which JSON cannot (a number too large for a double?)"
            ));
        }
        serde_json::to_writer(&mut *out, &number).map_err(|error| error.to_string())?;
    } else if let Some(value) = value.downcast_ref::<CelString<'_>>() {
        serde_json::to_writer(&mut *out, value.inner()).map_err(|error| error.to_string())?;
    } else if let Some(list) = value.downcast_ref::<CelList<'_>>() {
        out.push(b'[');
        for (index, element) in list.inner().iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_json(element.as_ref(), out, limit)?;
        }
        out.push(b']');
    } else if let Some(map) = value.downcast_ref::<CelMap<'_>>() {
        let mut members = Vec::with_capacity(map.inner().len());
        for (key, element) in map.inner() {
            match key {
                CelMapKey::String(key) => members.push((key.inner(), element)),
                _ => return Err("the input would hold a map whose keys are not strings".to_owned()),
            }
        }
        // Sorted, so that the same delivery always gives the same input.
        members.sort_unstable_by_key(|(key, _)| *key);
        out.push(b'{');
        for (index, (key, element)) in members.into_iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, key).map_err(|error| error.to_string())?;
            out.push(b':');
            write_json(element.as_ref(), out, limit)?;
        }
        out.push(b'}');
    } else {
        return Err(format!(
            "the input would hold a {}, which JSON cannot",
            value.get_type().name()
        ));
    }
    if out.len() > limit {
        return Err(format!(
            "the input is larger than the limit of {limit} bytes"
        ));
    }
    Ok(())
}
