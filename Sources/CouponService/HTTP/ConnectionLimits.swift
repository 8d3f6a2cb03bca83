// What one connection may take, in the channel's handlers: its request body's time
// (`--request-timeout`) and its slot among `--max-connections`.
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import Synchronization

/// The body of a request did not arrive whole within the request deadline (408).
struct RequestDeadlineExceeded: Error {}

/// A request's whole body must arrive within `timeout` of its head. The idle timeout alone restarts
/// on every part, so a body sent a byte every few seconds held its connection forever; here the
/// first part past the deadline ends the request body with `RequestDeadlineExceeded` (a 408 when a
/// handler is reading it). The head is bounded by the idle timeout: no part reaches this handler or
/// the idle timer until the head is whole.
///
/// An answer that leaves before the request arrived whole (413 for a `Content-Length` over the
/// route's limit, 408, 401 before the body is read) says `Connection: close` and closes the
/// connection, so the rest of the body is never read.
///
/// No timer: the clock is read once per head and per body part.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let timeout: Duration
    /// When the head of the request now arriving came; nil between requests.
    private var started: ContinuousClock.Instant?
    private var expired = false

    init(timeout: Duration) { self.timeout = timeout }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            started = .now
        case .body:
            if expired { return }
            if let started, ContinuousClock.now - started > timeout {
                expired = true
                context.fireErrorCaught(RequestDeadlineExceeded())
                return
            }
        case .end:
            started = nil
            if expired { return }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let unfinished = started != nil || expired
        switch unwrapOutboundIn(data) {
        case .head(var response) where unfinished:
            response.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(response)), promise: promise)
        case .end where unfinished:
            context.writeAndFlush(data, promise: promise)
            context.close(promise: nil)
        default:
            context.write(data, promise: promise)
        }
    }
}

/// `--max-connections`: at most that many connections open at once; more wait in the accept queue.
/// At the cap, the connection idle longest (between requests, or never sent one) is closed once it
/// has been idle `OpenConnections.giveWayAfter` (a second), to let the next one in: idle keep-alive
/// connections, or ones that send a request every few seconds, must not hold every slot while a
/// client waits (five idle connections at a cap of five held a new one for 9.5 s, five slow pingers
/// for 29.5 s). Closing a connection between requests is HTTP's own way (RFC 9112 section 9.5);
/// clients open another. One just opened gets that second to send its request.
struct ConnectionCap: AvailableConnectionsDelegate {
    let maximum: Int
    let connections: OpenConnections
    private var count = 0

    init(_ maximum: Int, connections: OpenConnections) {
        self.maximum = maximum
        self.connections = connections
    }

    mutating func connectionOpened() { count += 1 }
    mutating func connectionClosed() { count -= 1 }

    func isAcceptingNewConnections() -> Bool {
        let accepting = count < maximum
        connections.atCap(!accepting)
        // Its close lets the next connection in (the handler asks again when one closes).
        if !accepting { connections.closeLongestIdle() }
        return accepting
    }
}

/// The open connections and since when each has been idle, kept by each one's `OpenConnections.Tracker`.
final class OpenConnections: Sendable {
    /// How long a connection must have been idle before it gives way at the cap.
    static let giveWayAfter: Duration = .seconds(1)

    private struct Open {
        let channel: any Channel
        /// Nil while a request is being read or answered.
        var idleSince: ContinuousClock.Instant?
    }

    private struct State {
        var open: [ObjectIdentifier: Open] = [:]
        /// A close of the longest idle is scheduled (for when it has been idle long enough).
        var closeScheduled = false
        /// The server stopped accepting at the cap: a connection that goes idle may give way.
        var atCap = false
    }

    private let state = Mutex(State())

    /// Closes the connection idle longest once it has been idle `giveWayAfter`: now, or when that
    /// time comes if it is still idle then. Nothing when none is idle: a request's end asks again.
    func closeLongestIdle() {
        let now = ContinuousClock.now
        let (close, later) = state.withLock { state -> ((any Channel)?, (channel: any Channel, at: ContinuousClock.Instant)?) in
            guard !state.closeScheduled,
                let (key, longest) = state.open.filter({ $0.value.idleSince != nil }).min(by: { $0.value.idleSince! < $1.value.idleSince! }),
                let since = longest.idleSince
            else { return (nil, nil) }
            guard now - since >= Self.giveWayAfter else {
                state.closeScheduled = true
                return (nil, (longest.channel, since + Self.giveWayAfter))
            }
            state.open.removeValue(forKey: key)
            return (longest.channel, nil)
        }
        close?.close(promise: nil)
        if let later {
            later.channel.eventLoop.scheduleTask(in: TimeAmount(later.at - now)) {
                self.state.withLock { $0.closeScheduled = false }
                self.closeLongestIdle()
            }
        }
    }

    fileprivate func opened(_ channel: any Channel) {
        state.withLock { $0.open[ObjectIdentifier(channel)] = Open(channel: channel, idleSince: .now) }
    }

    fileprivate func atCap(_ atCap: Bool) {
        state.withLock { $0.atCap = atCap }
    }

    fileprivate func mark(_ channel: any Channel, idle: Bool) {
        let giveWay = state.withLock { state in
            state.open[ObjectIdentifier(channel)]?.idleSince = idle ? .now : nil
            return idle && state.atCap && !state.closeScheduled
        }
        if giveWay { closeLongestIdle() }
    }

    fileprivate func closed(_ channel: any Channel) {
        state.withLock { _ = $0.open.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// In each connection's pipeline: busy from a request's head to its answer's end, idle otherwise.
    final class Tracker: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPRequestPart
        typealias InboundOut = HTTPRequestPart
        typealias OutboundIn = HTTPResponsePart
        typealias OutboundOut = HTTPResponsePart

        let connections: OpenConnections

        init(_ connections: OpenConnections) { self.connections = connections }

        func handlerAdded(context: ChannelHandlerContext) { connections.opened(context.channel) }
        func handlerRemoved(context: ChannelHandlerContext) { connections.closed(context.channel) }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head = unwrapInboundIn(data) { connections.mark(context.channel, idle: false) }
            context.fireChannelRead(data)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if case .end = unwrapOutboundIn(data) { connections.mark(context.channel, idle: true) }
            context.write(data, promise: promise)
        }
    }
}
