//! Registering one action twice on a type is an error at start-up, naming both places.

use std::net::SocketAddr;

use netlib::{
    handler, ChannelContext, ChannelId, ListenError, Message, Server, ServerConfig, ServerContext,
    ServerHandler, StartError,
};

struct Twice;
struct Ch;

impl ServerHandler for Twice {
    type Channel = Ch;
    fn connected(&mut self, _: &mut ServerContext<'_, Ch>, _: ChannelId, _: SocketAddr) -> Ch {
        Ch
    }
}
impl Ch {
    fn network_a(&mut self, _: &mut ChannelContext<'_, Twice>, _: &Message) {}
    fn network_a_again(&mut self, _: &mut ChannelContext<'_, Twice>, _: &Message) {}
}
handler!(Ch, "a" => network_a);
handler!(Ch, "a" => network_a_again);

#[test]
fn duplicate_registration_fails_at_bind() {
    let err =
        Server::bind(Twice, &["127.0.0.1:0"], ServerConfig::default()).expect_err("must fail");
    match &err {
        ListenError::Start(StartError::DuplicateHandler {
            target,
            action,
            first,
            second,
        }) => {
            assert_eq!(*target, "Ch");
            assert_eq!(*action, "a");
            assert_ne!(first, second);
            assert!(
                first.contains("duplicate_handler.rs") && second.contains("duplicate_handler.rs")
            );
        }
        other => panic!("wrong error: {other:?}"),
    }
    assert!(
        netlib::check_handlers().is_err(),
        "the program-wide check sees it too"
    );
    assert!(err.to_string().contains("registered twice"), "{err}");
}
