use workflow_core::prelude::*;

fn not_a_workflow() {
    on_cancel!(|cleanup| {
        let _ = cleanup;
    });
}

fn main() {}
