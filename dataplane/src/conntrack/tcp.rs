//! The TCP state machine (a simplified version of the kernel's: no window tracking).

use super::key::{Dir, State, flag};
use crate::wire::tcp::{FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN};

/// Next state after a segment with `tcp` flags in direction `dir`; updates the FIN bits in
/// `flags`.
pub fn next(st: State, flags: &mut u8, dir: Dir, tcp: u8) -> State {
    if tcp & FLAG_RST != 0 {
        return State::TcpClose;
    }
    let (mine, theirs) = match dir {
        Dir::Orig => (flag::FIN_ORIG, flag::FIN_REPLY),
        Dir::Reply => (flag::FIN_REPLY, flag::FIN_ORIG),
    };
    let syn = tcp & FLAG_SYN != 0;
    let ack = tcp & FLAG_ACK != 0;
    let fin = tcp & FLAG_FIN != 0;
    match st {
        State::TcpSynSent if dir == Dir::Reply && syn && ack => State::TcpSynRecv,
        State::TcpSynRecv if dir == Dir::Orig && ack && !syn => State::TcpEstablished,
        State::TcpEstablished if fin => {
            *flags |= mine;
            State::TcpFinWait
        }
        State::TcpFinWait if fin && *flags & mine == 0 => {
            *flags |= mine;
            State::TcpLastAck
        }
        State::TcpFinWait if ack && *flags & mine == 0 => State::TcpCloseWait,
        State::TcpCloseWait if fin && *flags & mine == 0 => {
            *flags |= mine;
            State::TcpLastAck
        }
        State::TcpLastAck if ack && !fin && *flags & theirs != 0 => State::TcpTimeWait,
        State::TcpTimeWait | State::TcpClose if dir == Dir::Orig && syn && !ack => {
            *flags &= !(flag::FIN_ORIG | flag::FIN_REPLY);
            State::TcpSynSent
        }
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_connection() {
        let mut f = 0;
        let mut s = State::TcpSynSent;
        s = next(s, &mut f, Dir::Reply, FLAG_SYN | FLAG_ACK);
        assert_eq!(s, State::TcpSynRecv);
        s = next(s, &mut f, Dir::Orig, FLAG_ACK);
        assert_eq!(s, State::TcpEstablished);
        s = next(s, &mut f, Dir::Orig, FLAG_FIN | FLAG_ACK);
        assert_eq!(s, State::TcpFinWait);
        s = next(s, &mut f, Dir::Reply, FLAG_ACK);
        assert_eq!(s, State::TcpCloseWait);
        s = next(s, &mut f, Dir::Reply, FLAG_FIN | FLAG_ACK);
        assert_eq!(s, State::TcpLastAck);
        s = next(s, &mut f, Dir::Orig, FLAG_ACK);
        assert_eq!(s, State::TcpTimeWait);
        s = next(s, &mut f, Dir::Orig, FLAG_SYN);
        assert_eq!(s, State::TcpSynSent);
        assert_eq!(
            next(State::TcpEstablished, &mut f, Dir::Reply, FLAG_RST),
            State::TcpClose
        );
    }
}
