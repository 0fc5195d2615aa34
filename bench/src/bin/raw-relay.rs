//! `raw-relay ADDR`: the ceiling for the benchmarks. A single-threaded mio relay with no JSON at
//! all: the complete frames (`...\0---\0`) a client sends go, as the same bytes, to every
//! client. Prints `raw-relay listening on ADDR`.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    writable: bool,
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let mut listener = TcpListener::bind(addr.parse().expect("address"))?;
    println!("raw-relay listening on {}", listener.local_addr()?);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let finder = memchr::memmem::FinderRev::new(b"\0---\0");
    let mut dirty: Vec<usize> = Vec::new();
    loop {
        poll.poll(&mut events, None)?;
        let mut frames: Vec<u8> = Vec::new();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            poll.registry().register(
                                &mut stream,
                                Token(next),
                                Interest::READABLE,
                            )?;
                            conns.insert(
                                next,
                                Conn {
                                    stream,
                                    inbuf: Vec::new(),
                                    out: Vec::new(),
                                    writable: false,
                                },
                            );
                            next += 1;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let key = ev.token().0;
            let mut gone = false;
            if let Some(c) = conns.get_mut(&key) {
                if ev.is_writable() {
                    dirty.push(key);
                }
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            gone = true;
                            break;
                        }
                        Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            gone = true;
                            break;
                        }
                    }
                }
                // Forward only complete frames, so frames of different senders never interleave.
                if let Some(i) = finder.rfind(&c.inbuf) {
                    frames.extend_from_slice(&c.inbuf[..i + 5]);
                    c.inbuf.drain(..i + 5);
                }
            }
            if gone {
                if let Some(mut c) = conns.remove(&key) {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
        }
        if !frames.is_empty() {
            for (k, c) in conns.iter_mut() {
                c.out.extend_from_slice(&frames);
                dirty.push(*k);
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty.drain(..) {
            let Some(c) = conns.get_mut(&key) else {
                continue;
            };
            let mut written = 0;
            while written < c.out.len() {
                match c.stream.write(&c.out[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            c.out.drain(..written);
            let want = !c.out.is_empty();
            if want != c.writable {
                c.writable = want;
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                poll.registry()
                    .reregister(&mut c.stream, Token(key), interest)?;
            }
        }
    }
}
