#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
struct transfer;
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Sleep {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<
            <reserve as ::workflow_core::Activity>::Output,
            Sleep,
        >();
    }
};
/// The state machine compiled from workflow `transfer`: one variant per suspension point.
#[derive(
    ::workflow_core::__private::serde::Serialize,
    ::workflow_core::__private::serde::Deserialize
)]
#[serde(crate = "::workflow_core::__private::serde")]
#[allow(clippy::large_enum_variant)]
enum TransferState {
    /// Before the first step; holds the input.
    Start {
        /// The workflow's input.
        t: Transfer,
    },
    /// Suspended at the activity `reserve`.
    Reserve {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
    },
    /// Suspended at the timer.
    Sleep {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// `hold`, still needed after this await.
        hold: <reserve as ::workflow_core::Activity>::Output,
    },
    /// Suspended at the activity `capture`.
    Capture {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
    },
    /// Finished: the code returned.
    Finished,
}
impl TransferState {
    #[allow(
        unreachable_code,
        unused_variables,
        unused_mut,
        unused_assignments,
        unused_braces,
        unused_labels,
        clippy::all
    )]
    fn __wf_drive(
        __wf_state: &mut Self,
        __wf_cx: &::workflow_core::__private::StepContext,
        __wf_scope: ::workflow_core::__private::ScopeId,
    ) -> ::core::result::Result<
        ::workflow_core::__private::Flow<Receipt>,
        WorkflowError,
    > {
        let ctx = ::workflow_core::__private::attach(__wf_cx, __wf_scope);
        '__wf_tramp: loop {
            match ::core::mem::replace(__wf_state, Self::Finished) {
                Self::Start { t: __wf_l_t } => {
                    let t: Transfer = __wf_l_t;
                    return ::workflow_core::__private::finish({
                        let __wf_aw0 = {
                            let __wf_op = ::workflow_core::__private::start(
                                ctx.activity(reserve, t.amount),
                            );
                            *__wf_state = Self::Reserve { op_id: __wf_op };
                            continue '__wf_tramp;
                        };
                    });
                }
                Self::Reserve { op_id: __wf_op } => {
                    let __wf_value: ::core::result::Result<
                        <reserve as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <reserve as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::Reserve { op_id: __wf_op };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let __wf_aw0 = __wf_value;
                        let hold = __wf_aw0?;
                        let __wf_aw1 = {
                            let __wf_op = ::workflow_core::__private::start(
                                ctx.sleep(MINUTE),
                            );
                            *__wf_state = Self::Sleep {
                                op_id: __wf_op,
                                hold: hold,
                            };
                            continue '__wf_tramp;
                        };
                    });
                }
                Self::Sleep { op_id: __wf_op, hold: __wf_l_hold } => {
                    let __wf_value: ::core::result::Result<
                        (),
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<(), ::workflow_core::WorkflowError>,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::Sleep {
                                op_id: __wf_op,
                                hold: __wf_l_hold,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let hold = __wf_l_hold;
                        let __wf_aw1 = __wf_value;
                        __wf_aw1?;
                        let __wf_aw2 = {
                            let __wf_op = ::workflow_core::__private::start(
                                ctx.activity(capture, hold),
                            );
                            *__wf_state = Self::Capture { op_id: __wf_op };
                            continue '__wf_tramp;
                        };
                    });
                }
                Self::Capture { op_id: __wf_op } => {
                    let __wf_value: ::core::result::Result<
                        <capture as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <capture as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::Capture { op_id: __wf_op };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let __wf_aw2 = __wf_value;
                        let r = __wf_aw2?;
                        Ok(r)
                    });
                }
                Self::Finished => {
                    return ::core::result::Result::Err(
                        ::core::convert::From::from(
                            ::workflow_core::__private::resumed_after_finish("transfer"),
                        ),
                    );
                }
            }
        }
    }
}
impl ::workflow_core::WorkflowMachine for TransferState {
    type Output = ::core::result::Result<Receipt, WorkflowError>;
    fn resume(
        &mut self,
        __wf_cx: &::workflow_core::__private::StepContext,
    ) -> ::workflow_core::Step<Self::Output> {
        ::workflow_core::__private::into_step(
            Self::__wf_drive(self, __wf_cx, ::workflow_core::__private::ScopeId::ROOT),
        )
    }
    fn state_name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "Start",
            Self::Reserve { .. } => "Reserve",
            Self::Sleep { .. } => "Sleep",
            Self::Capture { .. } => "Capture",
            Self::Finished => "Finished",
        }
    }
}
impl ::workflow_core::Workflow for transfer {
    const NAME: &'static str = "transfer";
    const SCHEMA: u64 = ::workflow_core::__private::fingerprint(
        "transfer|Receipt|WorkflowError|Start{t:Transfer}|Reserve{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,}|Sleep{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,hold:<reserveas::workflow_core::Activity>::Output}|Capture{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,}",
    );
    type Input = Transfer;
    type Output = Receipt;
    type Error = WorkflowError;
    type State = TransferState;
    fn start(__wf_input: Self::Input) -> Self::State {
        TransferState::Start {
            t: __wf_input,
        }
    }
    fn graph() -> ::workflow_core::StateGraph {
        ::workflow_core::StateGraph {
            workflow: ::std::string::String::from("transfer"),
            states: ::std::vec![
                ::workflow_core::StateNode { name : ::std::string::String::from("Start"),
                kind : ::workflow_core::StateKind::Start, awaits :
                ::std::string::String::new(), fields :
                ::std::vec![::std::string::String::from("t")], },
                ::workflow_core::StateNode { name :
                ::std::string::String::from("Reserve"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `reserve`"), fields :
                ::std::vec![], }, ::workflow_core::StateNode { name :
                ::std::string::String::from("Sleep"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("timer"), fields :
                ::std::vec![::std::string::String::from("hold")], },
                ::workflow_core::StateNode { name :
                ::std::string::String::from("Capture"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `capture`"), fields :
                ::std::vec![], }, ::workflow_core::StateNode { name :
                ::std::string::String::from("Finished"), kind :
                ::workflow_core::StateKind::Finished, awaits :
                ::std::string::String::new(), fields : ::std::vec::Vec::new(), }
            ],
            transitions: ::std::vec![
                ::workflow_core::Transition { from :
                ::std::string::String::from("Start"), to :
                ::std::string::String::from("Reserve"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Reserve"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Reserve"), to :
                ::std::string::String::from("Sleep"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Sleep"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Sleep"), to :
                ::std::string::String::from("Capture"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Capture"), to :
                ::std::string::String::from("Finished"), on_cancel : false, }
            ],
        }
    }
}
