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
/// Two arguments, both optional, fix what queued work sees:
///
/// * `name = "…"`: the registered name, instead of the path (keep it when the function
///   moves, or give it a short public name);
/// * `version = N` (default 1): raise it when the arguments or the meaning change, so that
///   work queued for the old version is refused by a worker with the new one (a dead
///   letter that says why) rather than misread.
///
/// ```ignore
/// #[plait::task(name = "thumbs.resize", version = 2)]
/// fn resize(path: String, width: u32) -> u64 { /* ... */ 0 }
/// ```
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
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| options.parse(&meta));
    parse_macro_input!(attr with parser);
    let function = parse_macro_input!(item as ItemFn);
    match expand(&function, &options) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// `#[plait::task(name = "…", version = N)]`.
#[derive(Default)]
struct Options {
    name: Option<syn::LitStr>,
    version: Option<u32>,
}

impl Options {
    fn parse(&mut self, meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("name") {
            let name: syn::LitStr = meta.value()?.parse()?;
            if name.value().trim().is_empty() {
                return Err(syn::Error::new(
                    name.span(),
                    "a task's name cannot be empty",
                ));
            }
            self.name = Some(name);
            Ok(())
        } else if meta.path.is_ident("version") {
            let version: syn::LitInt = meta.value()?.parse()?;
            let value: u32 = version.base10_parse()?;
            if value == 0 {
                return Err(syn::Error::new(version.span(), "versions start at 1"));
            }
            self.version = Some(value);
            Ok(())
        } else {
            Err(meta.error("#[plait::task] takes `name = \"…\"` and `version = N`, nothing else"))
        }
    }
}

fn expand(function: &ItemFn, options: &Options) -> syn::Result<proc_macro2::TokenStream> {
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
    let registered_name = match &options.name {
        Some(name) => quote!(#name),
        None => quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#name)
        )),
    };
    let version = options.version.unwrap_or(1);
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
            const NAME: &'static str = #registered_name;
            const VERSION: u32 = #version;

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
