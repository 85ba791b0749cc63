//! The order of a run: `depends_on` as a graph over the run's pipelines.

use std::collections::{BTreeMap, BTreeSet};

use weir_core::{ControllerRow, Error, Result};

/// One pipeline of a run and what it waits for.
#[derive(Debug)]
pub(crate) struct Node {
    pub row: ControllerRow,
    /// Indices of the run's pipelines this one depends on.
    pub deps: Vec<usize>,
    /// `depends_on` names that are no pipeline at all: the pipeline fails.
    pub unknown: Vec<String>,
}

/// Build the graph of `rows`. A dependency on a pipeline that exists but is not
/// in this run (inactive, or not selected with `--pipeline`) does not order
/// anything; a name that is no pipeline is the depending pipeline's error; a
/// cycle rejects the whole run before anything runs.
pub(crate) fn plan(rows: Vec<ControllerRow>, all_names: &BTreeSet<&str>) -> Result<Vec<Node>> {
    let index: BTreeMap<String, usize> = rows.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect();
    let nodes: Vec<Node> = rows
        .into_iter()
        .map(|row| {
            let mut deps = Vec::new();
            let mut unknown = Vec::new();
            for name in row.depends_on.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
                match index.get(name) {
                    Some(&i) if !deps.contains(&i) => deps.push(i),
                    Some(_) => {}
                    None if all_names.contains(name) => {}
                    None => unknown.push(name.to_owned()),
                }
            }
            Node { row, deps, unknown }
        })
        .collect();
    if let Some(cycle) = find_cycle(&nodes) {
        let path: Vec<String> = cycle.iter().map(|&i| format!("`{}`", nodes[i].row.name)).collect();
        return Err(Error::user(format!(
            "depends_on forms a cycle: {}; nothing was run. Remove one of these dependencies from the controller table",
            path.join(" → ")
        )));
    }
    Ok(nodes)
}

/// A cycle as a path that starts and ends at the same node, if there is one.
fn find_cycle(nodes: &[Node]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; nodes.len()];
    for start in 0..nodes.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative depth-first search: (node, next dependency to visit).
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            match nodes[node].deps.get(*next).copied() {
                Some(dep) => {
                    *next += 1;
                    match marks[dep] {
                        Mark::New => {
                            marks[dep] = Mark::OnPath;
                            path.push((dep, 0));
                        }
                        Mark::OnPath => {
                            let from = path.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                            let mut cycle: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                            cycle.push(dep);
                            // Print it in the order things run: dependency first.
                            cycle.reverse();
                            return Some(cycle);
                        }
                        Mark::Done => {}
                    }
                }
                None => {
                    marks[node] = Mark::Done;
                    path.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, deps: &[&str]) -> ControllerRow {
        ControllerRow {
            name: name.into(),
            depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn names<'a>(extra: &[&'a str], rows: &'a [ControllerRow]) -> BTreeSet<&'a str> {
        rows.iter().map(|r| r.name.as_str()).chain(extra.iter().copied()).collect()
    }

    #[test]
    fn orders_by_dependencies_and_names_unknown_ones() {
        let rows = vec![row("a", &[]), row("b", &["a", "a", " "]), row("c", &["b", "ghost", "inactive"])];
        let all = names(&["inactive"], &rows);
        let nodes = plan(rows.clone(), &all).unwrap();
        assert_eq!(nodes[1].deps, vec![0]);
        assert_eq!(nodes[2].deps, vec![1]);
        assert_eq!(nodes[2].unknown, vec!["ghost".to_owned()]);
    }

    #[test]
    fn rejects_a_cycle_and_shows_it() {
        let rows = vec![row("a", &["c"]), row("b", &["a"]), row("c", &["b"]), row("d", &[])];
        let all = names(&[], &rows);
        let err = plan(rows.clone(), &all).unwrap_err().to_string();
        assert!(err.contains("`a` → `b` → `c` → `a`"), "{err}");
        let rows = vec![row("self", &["self"])];
        let all = names(&[], &rows);
        let err = plan(rows.clone(), &all).unwrap_err().to_string();
        assert!(err.contains("`self` → `self`"), "{err}");
    }

    #[test]
    fn a_diamond_is_no_cycle() {
        let rows = vec![row("a", &[]), row("b", &["a"]), row("c", &["a"]), row("d", &["b", "c"])];
        let all = names(&[], &rows);
        assert!(plan(rows.clone(), &all).is_ok());
    }
}
