import HTTPTypes
import NIOCore
import NIOHTTPTypes

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
