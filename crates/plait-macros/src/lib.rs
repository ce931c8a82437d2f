//! Procedural macros for [plait](https://docs.rs/plait). Use them through `plait`'s
//! re-exports (`#[plait::task]`), not from this crate directly.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, ReturnType, Type, parse_macro_input};

/// Registers a function as a task that worker processes can run by name.
///
/// The function stays as written (call it directly as before). Beside it, in the type
/// namespace, the macro adds a zero-sized type of the same name that implements
/// `plait::process::Task`; `name::task()` returns it, for `Runtime::spawn_process` and
/// `Runtime::map_process`. The arguments and the result must implement serde's
/// `Serialize` and `Deserialize` (a compile error otherwise). A function of one argument
/// takes that argument; a function of several takes them as a tuple.
///
/// The task's name is its module path and function name, such as `my_app::jobs::resize`:
/// stable across builds, so that work queued by name still finds its task. Two tasks of the
/// same name in one module (possible only inside function bodies) would share it; the
/// registry keeps one and warns.
///
/// ```ignore
/// #[plait::task]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() {
///     plait::init(); // a worker process stops here and serves tasks
///     let rt = plait::Runtime::new().unwrap();
///     assert_eq!(rt.spawn_process(square::task(), 7).join().unwrap(), 49);
/// }
/// ```
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new(attr.span(), "#[plait::task] takes no arguments")
            .to_compile_error()
            .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    match expand(&function) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand(function: &ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let signature = &function.sig;
    if let Some(asyncness) = &signature.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "#[plait::task] functions must be synchronous: a worker process runs one task at \
             a time; run async work on the coroutine strand (Runtime::spawn_async)",
        ));
    }
    if !signature.generics.params.is_empty() {
        return Err(syn::Error::new(
            signature.generics.span(),
            "#[plait::task] functions cannot be generic: a worker finds the task by name, \
             so it must have one concrete type",
        ));
    }
    let mut types: Vec<&Type> = Vec::new();
    for input in &signature.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new(
                    receiver.span(),
                    "#[plait::task] goes on free functions, not methods",
                ));
            }
            FnArg::Typed(typed) => {
                if let Pat::Ident(ident) = &*typed.pat
                    && ident.by_ref.is_some()
                {
                    return Err(syn::Error::new(
                        ident.span(),
                        "arguments cannot bind by ref",
                    ));
                }
                types.push(&typed.ty);
            }
        }
    }
    let name = &signature.ident;
    let vis = &function.vis;
    let output = match &signature.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let args: Vec<_> = (0..types.len())
        .map(|i| format_ident!("__plait_arg{}", i, span = Span::call_site()))
        .collect();
    let (args_type, destructure) = match types.as_slice() {
        [] => (quote!(()), quote!(())),
        [one] => (quote!(#one), quote!(#(#args)*)),
        many => (quote!((#(#many,)*)), quote!((#(#args,)*))),
    };
    let doc = format!(
        "The registered task [`{name}`](fn@{name}): pass `{name}::task()` to \
         `Runtime::spawn_process` or `Runtime::map_process`."
    );
    Ok(quote! {
        #function

        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        #vis struct #name {
            _registered: (),
        }

        impl #name {
            /// The task, to hand to `Runtime::spawn_process` or `Runtime::map_process`.
            #[must_use]
            #vis const fn task() -> Self {
                #name { _registered: () }
            }
        }

        impl ::plait::process::Task for #name {
            type Args = #args_type;
            type Output = #output;
            const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name));

            fn run(args: Self::Args) -> Self::Output {
                let #destructure = args;
                #name(#(#args),*)
            }
        }

        ::plait::__private::inventory::submit! {
            ::plait::process::Registration::of::<#name>()
        }
    })
}
