//! `#[activity]`: an `async fn(ActivityContext, Input) -> Result<Output, ActivityError>`
//! becomes a unit struct of the same name implementing `workflow_core::Activity`.
//!
//! ```text
//! // Input:
//! #[activity]
//! async fn charge(ctx: ActivityContext, order: Order) -> Result<Receipt, ActivityError> { .. }
//! // Output:
//! pub struct charge;
//! impl Activity for charge {
//!     const NAME: &str = "charge";
//!     type Input = Order;
//!     type Output = Receipt;
//!     fn run(self, ctx, input) -> BoxFuture<..> {
//!         async fn body(ctx: ActivityContext, order: Order) -> Result<Receipt, ActivityError> { .. }
//!         Box::pin(body(ctx, input))
//!     }
//! }
//! ```

use crate::args::Args;
use crate::signature::{self, Kind};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ItemFn;

pub fn expand(args: Args, f: ItemFn) -> TokenStream {
    let name = &f.sig.ident;
    let vis = &f.vis;
    let docs: Vec<_> = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let handle = if signature::has_receiver(&f) {
        TokenStream::new() // inside an `impl`: only the errors
    } else {
        quote! {
            #(#docs)*
            #[allow(non_camel_case_types)]
            #[derive(Clone, Copy, Debug, Default)]
            #vis struct #name;
        }
    };
    let sig = match signature::check(&f, Kind::Activity) {
        (sig, None) => sig,
        (_, Some(e)) => {
            let err = e.to_compile_error();
            return quote!(#handle #err);
        }
    };
    let registered = args
        .name
        .map(|n| n.value())
        .unwrap_or_else(|| name.to_string());
    let ok = &sig.ok;
    let input_ty = sig
        .input
        .as_ref()
        .map(|(_, t)| quote!(#t))
        .unwrap_or_else(|| quote!(()));
    let body_fn = syn::Ident::new("__activity_body", Span::mixed_site());
    let ctx = syn::Ident::new("__ctx", Span::mixed_site());
    let input = syn::Ident::new("__input", Span::mixed_site());
    let call = if sig.input.is_some() {
        quote!(#body_fn(#ctx, #input))
    } else {
        quote!({ let () = #input; #body_fn(#ctx) })
    };
    let mut inner = f.clone();
    inner.sig.ident = body_fn.clone();
    inner.vis = syn::Visibility::Inherited;
    inner.attrs.retain(|a| !a.path().is_ident("doc"));
    quote! {
        #handle
        impl ::workflow_core::Activity for #name {
            const NAME: &'static str = #registered;
            type Input = #input_ty;
            type Output = #ok;
            fn run(
                self,
                #ctx: ::workflow_core::ActivityContext,
                #input: Self::Input,
            ) -> ::workflow_core::BoxFuture<::core::result::Result<#ok, ::workflow_core::ActivityError>> {
                #inner
                ::workflow_core::__private::box_activity(#call)
            }
        }
    }
}
