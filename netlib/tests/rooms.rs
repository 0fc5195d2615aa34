//! Rooms: channels join and leave named rooms; sends to a room, to a room but one, and to
//! several rooms reach each member once. In memory, with `settle`.

use std::net::SocketAddr;

use netlib::{
    handler, ChannelId, Client, ClientConfig, Closed, Message, Room, RoomBut, RoomError, Rooms,
    Server, ServerConfig, ServerContext, ServerHandler,
};

/// Channels join the rooms they name; `say` goes to a room but the sender.
#[derive(Default)]
struct Hall {
    /// The rooms a channel was in when its `closed` hook ran.
    closed_in: Vec<Vec<String>>,
}

impl ServerHandler for Hall {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {}
    fn closed(&mut self, ctx: &mut ServerContext<'_, ()>, gone: Closed<()>) {
        self.closed_in
            .push(ctx.rooms_of(gone.id).map(str::to_owned).collect());
    }
}

impl Hall {
    fn network_join(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let room = m.get_str("room").unwrap_or_default();
        let reply = match ctx.join(from, room) {
            Ok(new) => Message::new("joined").with("room", room).with("new", new),
            Err(e) => Message::new("refused").with("why", e.to_string()),
        };
        ctx.send_to(from, &reply).unwrap();
    }
    fn network_say(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let room = m.get_str("room").unwrap_or_default();
        let said = Message::new("said").with("text", m.get_str("text").unwrap_or_default());
        ctx.send_to(RoomBut(room, from), &said).unwrap();
    }
}
handler!(Hall, "join" => network_join);
handler!(Hall, "say" => network_say);

fn said(c: &mut Client) -> Vec<String> {
    let got = c.pump_messages().unwrap();
    got.iter()
        .filter_map(|m| m.get_str("text").map(str::to_owned))
        .collect()
}

#[test]
fn room_sends_reach_each_member_once_and_closed_channels_leave() {
    let config = ServerConfig::default().max_rooms_per_channel(2);
    let mut server = Server::new(Hall::default(), config).unwrap();
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (id, c) = server.connect_local(ClientConfig::default()).unwrap();
        ids.push(id);
        clients.push(c);
    }
    assert_eq!(
        server.context().rooms().count(),
        0,
        "no room until one is joined"
    );
    let join =
        |c: &mut Client, room: &str| c.send(&Message::new("join").with("room", room)).unwrap();
    join(&mut clients[0], "red");
    join(&mut clients[1], "red");
    join(&mut clients[1], "blue");
    join(&mut clients[2], "blue");
    join(&mut clients[1], "green"); // over the cap of 2
    let mut all: Vec<&mut Client> = clients.iter_mut().collect();
    server.settle(&mut all).unwrap();
    let replies = clients[1].pump_messages().unwrap();
    let refused: Vec<_> = replies.iter().filter(|m| m.action() == "refused").collect();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].get_str("why").unwrap().contains("in 2 at most"));
    for c in &mut clients {
        c.pump_messages().unwrap();
    }

    let mut ctx = server.context();
    assert_eq!(ctx.room_len("red"), 2);
    let mut red: Vec<ChannelId> = ctx.members("red").collect();
    red.sort_by_key(|id| id.serial());
    assert_eq!(red, [ids[0], ids[1]]);
    assert_eq!(ctx.rooms_of(ids[1]).collect::<Vec<_>>(), ["red", "blue"]);
    assert_eq!(
        ctx.join(ids[1], ""),
        Err(RoomError::BadName { len: 0, limit: 255 })
    );
    // To one room, to several (each once), to a room but one.
    assert_eq!(
        ctx.send_to(Room("red"), &Message::new("n").with("text", "to red"))
            .unwrap(),
        2
    );
    let both = Message::new("n").with("text", "to red and blue");
    assert_eq!(ctx.send_to(Rooms(&["red", "blue"]), &both).unwrap(), 3);
    assert_eq!(ctx.send_to(Room("nowhere"), &both).unwrap(), 0);
    let mut all: Vec<&mut Client> = clients.iter_mut().collect();
    server.settle(&mut all).unwrap();
    assert_eq!(said(&mut clients[0]), ["to red", "to red and blue"]);
    assert_eq!(
        said(&mut clients[1]),
        ["to red", "to red and blue"],
        "once, though in both"
    );
    assert_eq!(said(&mut clients[2]), ["to red and blue"]);
    clients[0]
        .send(&Message::new("say").with("room", "red").with("text", "hi"))
        .unwrap();
    let mut all: Vec<&mut Client> = clients.iter_mut().collect();
    server.settle(&mut all).unwrap();
    assert!(said(&mut clients[0]).is_empty(), "not to the sender");
    assert_eq!(said(&mut clients[1]), ["hi"]);

    // A channel that closes leaves its rooms (its `closed` hook still sees them); an emptied
    // room is freed.
    clients[2].close();
    let mut all: Vec<&mut Client> = clients.iter_mut().collect();
    server.settle(&mut all).unwrap();
    assert_eq!(server.state().closed_in, [vec!["blue".to_owned()]]);
    let mut ctx = server.context();
    assert_eq!(ctx.room_len("blue"), 1);
    assert!(ctx.leave(ids[1], "blue"));
    assert!(!ctx.leave(ids[1], "blue"));
    assert_eq!(ctx.room_len("blue"), 0);
    assert_eq!(
        ctx.rooms().map(|r| r.0).collect::<Vec<_>>(),
        ["red"],
        "blue was freed"
    );
    assert_eq!(ctx.join(ids[2], "red"), Err(RoomError::NoChannel));
}

/// Records what the `cluster` hook gets.
#[derive(Default)]
struct Names {
    events: Vec<netlib::ClusterEvent>,
}

impl ServerHandler for Names {
    type Channel = ();
    fn connected(&mut self, ctx: &mut ServerContext<'_, ()>, id: ChannelId, _: SocketAddr) {
        ctx.join(id, "all").unwrap();
    }
    fn cluster(&mut self, _: &mut ServerContext<'_, ()>, event: netlib::ClusterEvent) {
        self.events.push(event);
    }
}

#[test]
fn names_are_claimed_once_and_released_by_their_channel_without_a_cluster() {
    use netlib::{ClusterError, ClusterEvent};
    let mut server = Server::new(Names::default(), ServerConfig::default()).unwrap();
    let (a, mut ca) = server.connect_local(ClientConfig::default()).unwrap();
    let (b, mut cb) = server.connect_local(ClientConfig::default()).unwrap();
    assert_eq!(a.node(), 0, "no cluster: node 0");
    let mut ctx = server.context();
    ctx.claim(a, &["ada"]);
    ctx.claim(b, &["ada"]);
    ctx.claim(a, &["ada"]);
    server.settle(&mut [&mut ca, &mut cb]).unwrap();
    let claimed = |id, result| ClusterEvent::Claimed {
        id,
        names: vec!["ada".to_owned()],
        result,
    };
    assert_eq!(
        server.state().events,
        [
            claimed(a, Ok(())),
            claimed(b, Err(ClusterError::Taken)),
            claimed(a, Ok(()))
        ]
    );
    server.state_mut().events.clear();
    ca.close();
    server.settle(&mut [&mut ca, &mut cb]).unwrap();
    server.context().claim(b, &["ada"]);
    server.settle(&mut [&mut ca, &mut cb]).unwrap();
    assert_eq!(
        server.state().events,
        [claimed(b, Ok(()))],
        "released by its closed holder"
    );
    server.state_mut().events.clear();
    server.context().claim(a, &["ghost"]);
    server.settle(&mut [&mut ca, &mut cb]).unwrap();
    let no_channel = ClusterEvent::Claimed {
        id: a,
        names: vec!["ghost".to_owned()],
        result: Err(ClusterError::NoChannel),
    };
    assert_eq!(
        server.state().events,
        [no_channel],
        "a closed channel holds no name"
    );
    server.state_mut().events.clear();
    server.context().release(b, "ada");
    let (c, mut cc) = server.connect_local(ClientConfig::default()).unwrap();
    server.context().claim(c, &["ada"]);
    server.settle(&mut [&mut cb, &mut cc]).unwrap();
    assert_eq!(
        server.state().events,
        [claimed(c, Ok(()))],
        "released on request"
    );
}

#[test]
fn a_members_query_pages_through_a_room_in_id_order() {
    use netlib::ClusterEvent;
    let mut server = Server::new(Names::default(), ServerConfig::default()).unwrap();
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (id, c) = server.connect_local(ClientConfig::default()).unwrap();
        ids.push(id);
        clients.push(c);
    }
    let mut seen = Vec::new();
    let mut after = None;
    for page in 0..10 {
        let token = server.context().query_members("all", after, 2);
        let mut all: Vec<&mut Client> = clients.iter_mut().collect();
        server.settle(&mut all).unwrap();
        let events = std::mem::take(&mut server.state_mut().events);
        let [ClusterEvent::Members {
            token: t,
            page: got,
            next,
            ..
        }] = &events[..]
        else {
            panic!("one page: {events:?}");
        };
        assert_eq!(*t, token);
        seen.extend(got.iter().copied());
        after = *next;
        if after.is_none() {
            assert_eq!(page, 2, "5 members in pages of 2");
            break;
        }
    }
    assert_eq!(seen, ids, "every member once, in id order");
}
