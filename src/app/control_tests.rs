//! The asking side against a socket that goes away: a run that ends while it is asked.
use super::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;

/// Serves one connection: reads the request, writes `then`, and closes.
fn serve_once(listener: &UnixListener, then: &[u8]) {
    let (mut s, _) = listener.accept().expect("accept");
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("request");
    s.write_all(then).expect("write");
}

#[test]
fn a_run_that_ends_before_answering_is_no_run_answering_and_a_cut_answer_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let path = socket_inside(dir.path()).expect("a short path");
    let listener = UnixListener::bind(&path).expect("bind");
    let part = serde_json::to_string(&Frame::Out("part".into())).expect("frame") + "\n";
    let server = std::thread::spawn(move || {
        serve_once(&listener, b"");
        serve_once(&listener, part.as_bytes());
    });
    let mut heard = Vec::new();
    let mut out = |text: &str| {
        heard.push(text.to_string());
        Ok(())
    };
    match ask(dir.path(), &Request::State, &mut out).expect("no error") {
        Reached::NoOne(why) => assert!(why.contains("stopped before answering"), "{why}"),
        Reached::Answered => panic!("nothing was answered"),
    }
    // Part of the answer, then the socket closes: not retried, an error.
    let cut = ask(dir.path(), &Request::State, &mut out);
    assert!(cut.is_err(), "a cut answer is an error");
    server.join().expect("server");
    assert_eq!(heard, vec!["part".to_string()]);
}
