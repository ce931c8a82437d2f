//! [`Deps`]: the nodes a new node takes its inputs from, and how their results reach it.

use std::any::Any;
use std::sync::Arc;

use super::Node;

/// A node's result with its type erased, shared by the node's consumers.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// The inputs of a node: `()` for none, one [`Node`], a tuple of up to eight nodes, or a
/// `Vec` or slice of nodes of one type (a fan-in).
///
/// A closure on the thread strand receives [`Refs`](Deps::Refs): a reference for one node, a
/// tuple of references for a tuple, a `Vec` of references for a `Vec`. An async closure
/// receives [`Owned`](Deps::Owned), the same shape with `Arc`s, which it can hold across
/// `.await`s.
///
/// # Examples
///
/// ```
/// let mut graph = plait::graph::Graph::new();
/// let a = graph.task((), |()| 20u64);
/// let b = graph.task(a, |a| a + 1);
/// let c = graph.task((a, b), |(a, b)| a + b);
/// let total = graph.task(vec![a, b, c], |all| all.into_iter().sum::<u64>());
/// # let _ = total;
/// ```
pub trait Deps: sealed::Sealed {
    /// What a thread-strand closure receives.
    type Refs<'a>;
    /// What an async closure receives.
    type Owned: Send + 'static;

    /// Appends the input nodes' indices, in order; `false` if one of them belongs to a
    /// graph other than `graph`.
    #[doc(hidden)]
    fn ids(&self, graph: u64, out: &mut Vec<u32>) -> bool;

    /// Borrows the inputs' results, in the order of [`ids`](Deps::ids).
    #[doc(hidden)]
    fn refs(values: &[Value]) -> Self::Refs<'_>;

    /// Shares the inputs' results, in the order of [`ids`](Deps::ids).
    #[doc(hidden)]
    fn owned(values: &[Value]) -> Self::Owned;
}

mod sealed {
    pub trait Sealed {}
}

/// The result of an input, as its node's type. A [`Node<T>`] only ever names a node whose
/// body returns `T`, and a run only keeps an output made by its own node's call (see
/// [`Done::finish`](super::Done::finish)), so a mismatch is a bug in this module.
fn downcast_ref<T: 'static>(value: &Value) -> &T {
    value
        .downcast_ref()
        .expect("a node's result has the type its Node<T> names")
}

fn downcast_arc<T: Send + Sync + 'static>(value: &Value) -> Arc<T> {
    Arc::clone(value)
        .downcast()
        .unwrap_or_else(|_| unreachable!("a node's result has the type its Node<T> names"))
}

impl sealed::Sealed for () {}
impl Deps for () {
    type Refs<'a> = ();
    type Owned = ();

    fn ids(&self, _: u64, _: &mut Vec<u32>) -> bool {
        true
    }
    fn refs(_: &[Value]) {}
    fn owned(_: &[Value]) {}
}

impl<A> sealed::Sealed for Node<A> {}
impl<A: Send + Sync + 'static> Deps for Node<A> {
    type Refs<'a> = &'a A;
    type Owned = Arc<A>;

    fn ids(&self, graph: u64, out: &mut Vec<u32>) -> bool {
        out.push(self.id.0);
        self.graph == graph
    }
    fn refs(values: &[Value]) -> &A {
        downcast_ref(&values[0])
    }
    fn owned(values: &[Value]) -> Arc<A> {
        downcast_arc(&values[0])
    }
}

macro_rules! tuple_deps {
    ($($T:ident $i:tt),+) => {
        impl<$($T),+> sealed::Sealed for ($(Node<$T>,)+) {}
        impl<$($T: Send + Sync + 'static),+> Deps for ($(Node<$T>,)+) {
            type Refs<'a> = ($(&'a $T,)+);
            type Owned = ($(Arc<$T>,)+);

            fn ids(&self, graph: u64, out: &mut Vec<u32>) -> bool {
                $(out.push(self.$i.id.0);)+
                true $(&& self.$i.graph == graph)+
            }
            fn refs(values: &[Value]) -> Self::Refs<'_> {
                ($(downcast_ref::<$T>(&values[$i]),)+)
            }
            fn owned(values: &[Value]) -> Self::Owned {
                ($(downcast_arc::<$T>(&values[$i]),)+)
            }
        }
    };
}

tuple_deps!(A 0);
tuple_deps!(A 0, B 1);
tuple_deps!(A 0, B 1, C 2);
tuple_deps!(A 0, B 1, C 2, D 3);
tuple_deps!(A 0, B 1, C 2, D 3, E 4);
tuple_deps!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_deps!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_deps!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

impl<A> sealed::Sealed for Vec<Node<A>> {}
impl<A: Send + Sync + 'static> Deps for Vec<Node<A>> {
    type Refs<'a> = Vec<&'a A>;
    type Owned = Vec<Arc<A>>;

    fn ids(&self, graph: u64, out: &mut Vec<u32>) -> bool {
        self.as_slice().ids(graph, out)
    }
    fn refs(values: &[Value]) -> Vec<&A> {
        <&[Node<A>]>::refs(values)
    }
    fn owned(values: &[Value]) -> Vec<Arc<A>> {
        <&[Node<A>]>::owned(values)
    }
}

impl<A> sealed::Sealed for &[Node<A>] {}
impl<A: Send + Sync + 'static> Deps for &[Node<A>] {
    type Refs<'a> = Vec<&'a A>;
    type Owned = Vec<Arc<A>>;

    fn ids(&self, graph: u64, out: &mut Vec<u32>) -> bool {
        out.extend(self.iter().map(|node| node.id.0));
        self.iter().all(|node| node.graph == graph)
    }
    fn refs(values: &[Value]) -> Vec<&A> {
        values.iter().map(downcast_ref).collect()
    }
    fn owned(values: &[Value]) -> Vec<Arc<A>> {
        values.iter().map(downcast_arc).collect()
    }
}
