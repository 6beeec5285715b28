//! The SQL of a run search: one `SELECT` that filters, sorts and limits the runs, and the
//! decoding of its rows.

use super::{
    CompareOp, Comparison, Cursor, RunSearch, RunSummary, SortKey, SortTerm, SortValue,
    TextAttribute, TextMatch, TieOrder, TimeAttribute, ValueKind, mlflow,
};
use crate::store::StoreError;
use crate::store::entity::{latest_metric, pipeline, project, run, run_param, run_tag};
use sea_orm::sea_query::{
    Alias, BinOper, Expr, Func, IntoColumnRef, LikeExpr, NullOrdering, Order, Query,
    SelectStatement,
};
use sea_orm::{DbBackend, ExprTrait, QueryResult};

/// Length, in characters, of the value prefix that the `run_params` and `run_tags` indexes
/// contain. It must equal the `substr` length in migration `m20261204_000006`, or the
/// databases cannot match the conditions to the indexes. The whole value stays out of the
/// index because PostgreSQL rejects index entries over about 2.7 kB.
const INDEXED_PREFIX_CHARS: usize = 100;

/// Column aliases of the selected run fields.
const PROJECT_NAME: &str = "project_name";
const PIPELINE_NAME: &str = "pipeline_name";

/// Builds the query of one page: the runs meeting the filter, after the cursor, in the order
/// of `keys` then id, at most `limit` rows.
pub(super) fn page_query(
    search: &RunSearch,
    keys: &[SortKey],
    limit: u64,
    backend: DbBackend,
) -> SelectStatement {
    let mut query = Query::select();
    select_run_fields(&mut query);

    let mut sort_exprs = Vec::with_capacity(keys.len());
    for (index, key) in keys.iter().enumerate() {
        let expr = sort_expr(&mut query, index, &key.term);
        query.expr_as(expr.clone(), sort_alias(index));
        if key.term.is_nullable() {
            query.order_by_expr_with_nulls(expr.clone(), order(key), NullOrdering::Last);
        } else {
            query.order_by_expr(expr.clone(), order(key));
        }
        sort_exprs.push(expr);
    }
    let id_descending = match search.ties {
        TieOrder::LastKey => keys.last().is_some_and(|key| key.descending),
        TieOrder::Ascending => false,
    };
    let id_order = if id_descending {
        Order::Desc
    } else {
        Order::Asc
    };
    query.order_by_expr(Expr::col((run::Entity, run::Column::Id)), id_order);

    for comparison in &search.filter {
        query.and_where(comparison_expr(comparison, backend));
    }
    if let Some(cursor) = &search.after {
        query.and_where(after_cursor(keys, &sort_exprs, cursor, id_descending));
    }
    query.limit(limit);
    query
}

fn select_run_fields(query: &mut SelectStatement) {
    let columns = [
        run::Column::Id,
        run::Column::Name,
        run::Column::Status,
        run::Column::Source,
        run::Column::UserName,
        run::Column::CreatedAt,
        run::Column::StartedAt,
        run::Column::EndedAt,
        run::Column::Error,
    ];
    query
        .from(run::Entity)
        .columns(columns.map(|column| (run::Entity, column)));
    query
        .expr_as(
            Expr::col((project::Entity, project::Column::Name)),
            Alias::new(PROJECT_NAME),
        )
        .expr_as(
            Expr::col((pipeline::Entity, pipeline::Column::Name)),
            Alias::new(PIPELINE_NAME),
        )
        .inner_join(
            project::Entity,
            Expr::col((project::Entity, project::Column::Id))
                .equals((run::Entity, run::Column::ProjectId)),
        )
        .left_join(
            pipeline::Entity,
            Expr::col((pipeline::Entity, pipeline::Column::Id))
                .equals((run::Entity, run::Column::PipelineId)),
        );
}

fn sort_alias(index: usize) -> Alias {
    Alias::new(format!("sort_{index}"))
}

fn order(key: &SortKey) -> Order {
    if key.descending {
        Order::Desc
    } else {
        Order::Asc
    }
}

/// Returns the expression of sort term `index`, joining the table that contains it when it is
/// a metric, param or tag.
fn sort_expr(query: &mut SelectStatement, index: usize, term: &SortTerm) -> Expr {
    let table = Alias::new(format!("sort_table_{index}"));
    let (keyed_table, key) = match term {
        SortTerm::Text(attribute) => return text_attribute(*attribute),
        SortTerm::Time(attribute) => return time_attribute(*attribute),
        SortTerm::Metric(key) => (KeyedTable::LatestMetrics, key),
        SortTerm::Param(key) => (KeyedTable::RunParams, key),
        SortTerm::Tag(key) => (KeyedTable::RunTags, key),
    };
    let on = Expr::col((table.clone(), Alias::new("run_id")))
        .equals((run::Entity, run::Column::Id))
        .and(Expr::col((table.clone(), Alias::new("key"))).eq(key.as_str()));
    match keyed_table {
        KeyedTable::LatestMetrics => query.join_as(
            sea_orm::JoinType::LeftJoin,
            latest_metric::Entity,
            table.clone(),
            on,
        ),
        KeyedTable::RunParams => query.join_as(
            sea_orm::JoinType::LeftJoin,
            run_param::Entity,
            table.clone(),
            on,
        ),
        KeyedTable::RunTags => query.join_as(
            sea_orm::JoinType::LeftJoin,
            run_tag::Entity,
            table.clone(),
            on,
        ),
    };
    Expr::col((table, Alias::new("value")))
}

/// The tables of values keyed by run and name.
#[derive(Clone, Copy)]
enum KeyedTable {
    LatestMetrics,
    RunParams,
    RunTags,
}

fn text_attribute(attribute: TextAttribute) -> Expr {
    match attribute {
        TextAttribute::RunId => Expr::col((run::Entity, run::Column::Id)),
        TextAttribute::Name => Expr::col((run::Entity, run::Column::Name)),
        TextAttribute::Status => Expr::col((run::Entity, run::Column::Status)),
        TextAttribute::Source => Expr::col((run::Entity, run::Column::Source)),
        TextAttribute::User => Expr::col((run::Entity, run::Column::UserName)),
        TextAttribute::Pipeline => Expr::col((pipeline::Entity, pipeline::Column::Name)),
        TextAttribute::Project => Expr::col((project::Entity, project::Column::Name)),
    }
}

fn time_attribute(attribute: TimeAttribute) -> Expr {
    let column = match attribute {
        TimeAttribute::CreatedAt => run::Column::CreatedAt,
        TimeAttribute::StartedAt => run::Column::StartedAt,
        TimeAttribute::EndedAt => run::Column::EndedAt,
        // NULL when either end is missing, so unfinished runs sort last like other nulls.
        TimeAttribute::Duration => {
            return Expr::col((run::Entity, run::Column::EndedAt))
                .sub(Expr::col((run::Entity, run::Column::StartedAt)));
        }
    };
    Expr::col((run::Entity, column))
}

/// Builds the condition of one comparison. Metric, param and tag conditions select run ids
/// from their table, so the database can start from the `(key, value)` indexes when the
/// condition is selective.
fn comparison_expr(comparison: &Comparison, backend: DbBackend) -> Expr {
    let run_id = Expr::col((run::Entity, run::Column::Id));
    match comparison {
        Comparison::Metric { key, op, value } => {
            let values = Query::select()
                .column(latest_metric::Column::RunId)
                .from(latest_metric::Entity)
                .and_where(Expr::col(latest_metric::Column::Key).eq(key.as_str()))
                .and_where(compare(
                    Expr::col(latest_metric::Column::Value),
                    *op,
                    Expr::val(*value),
                ))
                .to_owned();
            run_id.in_subquery(values)
        }
        Comparison::Param { key, test } => run_id.in_subquery(keyed_text(
            run_param::Entity,
            run_param::Column::RunId,
            run_param::Column::Key,
            run_param::Column::Value,
            key,
            test,
            backend,
        )),
        Comparison::Tag { key, test } => run_id.in_subquery(keyed_text(
            run_tag::Entity,
            run_tag::Column::RunId,
            run_tag::Column::Key,
            run_tag::Column::Value,
            key,
            test,
            backend,
        )),
        Comparison::Text { attribute, test } => {
            text_condition(text_attribute(*attribute), test, backend, false)
        }
        Comparison::Time {
            attribute,
            op,
            value,
        } => compare(time_attribute(*attribute), *op, Expr::val(*value)),
        Comparison::ParamExists { key, exists } => mlflow::key_exists(
            run_param::Entity,
            run_param::Column::RunId,
            run_param::Column::Key,
            key,
            *exists,
        ),
        Comparison::TagExists { key, exists } => mlflow::key_exists(
            run_tag::Entity,
            run_tag::Column::RunId,
            run_tag::Column::Key,
            key,
            *exists,
        ),
        Comparison::Dataset {
            field,
            test,
            negated,
        } => mlflow::dataset(*field, test, *negated, backend),
        Comparison::ProjectIn(ids) if ids.is_empty() => Expr::val(1).eq(0),
        Comparison::ProjectIn(ids) => {
            Expr::col((run::Entity, run::Column::ProjectId)).is_in(ids.iter().copied())
        }
        Comparison::InTrash(deleted) => mlflow::in_trash(*deleted),
        Comparison::ArtifactUri { roots, test } => mlflow::artifact_uri(roots, test, backend),
    }
}

/// `SELECT run_id FROM table WHERE key = KEY AND <test on value>`.
fn keyed_text<E, C>(
    table: E,
    run_id: C,
    key_column: C,
    value_column: C,
    key: &str,
    test: &TextMatch,
    backend: DbBackend,
) -> SelectStatement
where
    E: sea_orm::sea_query::IntoTableRef,
    C: IntoColumnRef + Copy,
{
    Query::select()
        .column(run_id)
        .from(table)
        .and_where(Expr::col(key_column).eq(key))
        .and_where(text_condition(Expr::col(value_column), test, backend, true))
        .to_owned()
}

fn compare(left: Expr, op: CompareOp, right: Expr) -> Expr {
    match op {
        CompareOp::Eq => left.eq(right),
        CompareOp::Ne => left.ne(right),
        CompareOp::Lt => left.lt(right),
        CompareOp::Le => left.lte(right),
        CompareOp::Gt => left.gt(right),
        CompareOp::Ge => left.gte(right),
    }
}

/// Builds a text test on `column`. With `indexed`, equality tests also compare the value
/// prefix that the `(key, substr(value))` indexes contain, so the databases use them.
pub(crate) fn text_condition(
    column: Expr,
    test: &TextMatch,
    backend: DbBackend,
    indexed: bool,
) -> Expr {
    match test {
        TextMatch::Eq(text) => {
            let equal = column.clone().eq(text.as_str());
            if indexed {
                prefix(column).eq(prefix_of(text)).and(equal)
            } else {
                equal
            }
        }
        TextMatch::Ne(text) => column.ne(text.as_str()),
        TextMatch::In(texts) if texts.is_empty() => Expr::val(1).eq(0),
        TextMatch::In(texts) => {
            let within = column.clone().is_in(texts.iter().map(String::as_str));
            if indexed {
                let prefixes = texts.iter().map(|text| prefix_of(text));
                prefix(column).is_in(prefixes).and(within)
            } else {
                within
            }
        }
        TextMatch::Like(pattern) => like(column, pattern, backend),
        TextMatch::ILike(pattern) => ilike(column, pattern, backend),
    }
}

/// `substr(column, 1, N)`, written with literal numbers because SQLite only matches an index
/// expression written the same way.
fn prefix(column: Expr) -> Expr {
    Func::cust(Alias::new("substr"))
        .arg(column)
        .arg(Expr::cust("1"))
        .arg(Expr::cust(INDEXED_PREFIX_CHARS.to_string()))
        .into()
}

/// Returns the indexed prefix of `text`, as a bound value. Both databases count `substr` lengths in
/// Unicode code points, as `chars` does. SQLite only searches the index by a plain value, not
/// by a `substr` call on the value.
fn prefix_of(text: &str) -> Expr {
    Expr::val(text.chars().take(INDEXED_PREFIX_CHARS).collect::<String>())
}

/// Builds a case-sensitive `LIKE`. SQLite's `LIKE` ignores ASCII case, so there the pattern becomes
/// the equivalent `GLOB` pattern.
fn like(column: Expr, pattern: &str, backend: DbBackend) -> Expr {
    if backend == DbBackend::Sqlite {
        return column.binary(BinOper::Custom("GLOB"), glob_pattern(pattern));
    }
    column.like(LikeExpr::new(escape_trailing_backslash(pattern)).escape('\\'))
}

/// Builds a `LIKE` that ignores case: PostgreSQL's `ILIKE`, or SQLite's `LIKE`, which folds ASCII
/// letters only.
fn ilike(column: Expr, pattern: &str, backend: DbBackend) -> Expr {
    let pattern = escape_trailing_backslash(pattern);
    if backend == DbBackend::Postgres {
        // PostgreSQL's LIKE and ILIKE escape with a backslash by default.
        return column.binary(BinOper::Custom("ILIKE"), pattern);
    }
    column.like(LikeExpr::new(pattern).escape('\\'))
}

/// Makes a trailing lone backslash literal. PostgreSQL rejects a pattern that ends with its
/// escape character, and a search should not fail on the last character of a pattern.
fn escape_trailing_backslash(pattern: &str) -> String {
    let trailing = pattern.chars().rev().take_while(|c| *c == '\\').count();
    if trailing % 2 == 1 {
        format!("{pattern}\\")
    } else {
        pattern.to_owned()
    }
}

/// Translates a `LIKE` pattern with `\` escapes to a SQLite `GLOB` pattern with the same
/// matches, case-sensitively: `%` becomes `*`, `_` becomes `?`, and the characters that GLOB
/// treats specially become one-character classes.
pub(super) fn glob_pattern(pattern: &str) -> String {
    let mut glob = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let literal = match c {
            '%' => {
                glob.push('*');
                continue;
            }
            '_' => {
                glob.push('?');
                continue;
            }
            '\\' => chars.next().unwrap_or('\\'),
            other => other,
        };
        match literal {
            '*' | '?' | '[' => {
                glob.push('[');
                glob.push(literal);
                glob.push(']');
            }
            other => glob.push(other),
        }
    }
    glob
}

/// Builds the condition that a run sorts after `cursor`: lexicographic over the sort keys, then the
/// id. A missing value sorts after every present one, whatever the direction.
fn after_cursor(keys: &[SortKey], exprs: &[Expr], cursor: &Cursor, id_descending: bool) -> Expr {
    let id = Expr::col((run::Entity, run::Column::Id));
    let last_id = Expr::val(cursor.run_id.as_str());
    let mut condition = if id_descending {
        id.lt(last_id)
    } else {
        id.gt(last_id)
    };

    for ((key, expr), value) in keys.iter().zip(exprs).zip(&cursor.values).rev() {
        let Some(value) = value else {
            condition = expr.clone().is_null().and(condition);
            continue;
        };
        let value = sort_value_expr(value);
        let mut after = if key.descending {
            expr.clone().lt(value.clone())
        } else {
            expr.clone().gt(value.clone())
        };
        if key.term.is_nullable() {
            after = after.or(expr.clone().is_null());
        }
        condition = after.or(expr.clone().eq(value).and(condition));
    }

    // A plain range on the first key lets both databases walk its index to the cursor.
    if let (Some(key), Some(expr), Some(Some(value))) =
        (keys.first(), exprs.first(), cursor.values.first())
        && !key.term.is_nullable()
    {
        let value = sort_value_expr(value);
        let bound = if key.descending {
            expr.clone().lte(value)
        } else {
            expr.clone().gte(value)
        };
        condition = bound.and(condition);
    }
    condition
}

fn sort_value_expr(value: &SortValue) -> Expr {
    match value {
        SortValue::Real(number) => Expr::val(*number),
        SortValue::Integer(number) => Expr::val(*number),
        SortValue::Text(text) => Expr::val(text.as_str()),
    }
}

/// Decodes the run fields of a row of [`page_query`].
pub(super) fn read_summary(row: &QueryResult) -> Result<RunSummary, StoreError> {
    Ok(RunSummary {
        id: row.try_get("", "id")?,
        name: row.try_get("", "name")?,
        project: row.try_get("", PROJECT_NAME)?,
        pipeline: row.try_get("", PIPELINE_NAME)?,
        status: row.try_get("", "status")?,
        source: row.try_get("", "source")?,
        user_name: row.try_get("", "user_name")?,
        created_at: row.try_get("", "created_at")?,
        started_at: row.try_get("", "started_at")?,
        ended_at: row.try_get("", "ended_at")?,
        error: row.try_get("", "error")?,
        params: Default::default(),
        tags: Default::default(),
        metrics: Default::default(),
    })
}

/// Decodes the sort values of a row of [`page_query`], for the cursor of the next page.
pub(super) fn read_sort_values(
    row: &QueryResult,
    keys: &[SortKey],
) -> Result<Vec<Option<SortValue>>, StoreError> {
    let mut values = Vec::with_capacity(keys.len());
    for (index, key) in keys.iter().enumerate() {
        let column = format!("sort_{index}");
        let value = match key.term.value_kind() {
            ValueKind::Real => row
                .try_get::<Option<f64>>("", &column)?
                .map(SortValue::Real),
            ValueKind::Integer => row
                .try_get::<Option<i64>>("", &column)?
                .map(SortValue::Integer),
            ValueKind::Text => row
                .try_get::<Option<String>>("", &column)?
                .map(SortValue::Text),
        };
        values.push(value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_pattern_keeps_like_meaning() {
        let cases = [
            ("ab%", "ab*"),
            ("a_c", "a?c"),
            (r"100\%", "100%"),
            (r"a\_b", "a_b"),
            ("x*y?[z]", "x[*]y[?][[]z]"),
            (r"end\", r"end\"),
        ];

        for (like, glob) in cases {
            assert_eq!(glob_pattern(like), glob, "LIKE pattern {like}");
        }
    }

    #[test]
    fn trailing_backslash_becomes_literal() {
        assert_eq!(escape_trailing_backslash(r"a\"), r"a\\");
        assert_eq!(escape_trailing_backslash(r"a\\"), r"a\\");
        assert_eq!(escape_trailing_backslash("a%"), "a%");
    }
}
