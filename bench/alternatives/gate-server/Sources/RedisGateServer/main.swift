// The Redis gate of the popular FCFS designs (bench/alternatives/gate.lua) behind Hummingbird, as the
// service answers `POST /v1/coupons/{id}/issue`: one script call a request, on a few pipelined
// connections, answered 201, 200 (the user holds one) or 409 (sold out). For bench/alternatives
// only: it keeps no ticket row, no code, no event; what it is measured against is in
// bench/results/alternatives.md.
//
//   redis-gate-server --port 8420 --redis-port 6390 --script bench/alternatives/gate.lua [--connections 4]
import Foundation
import Hummingbird
import NIOCore
import NIOPosix
import Synchronization

/// A reply of Redis, as far as the gate's script and SCRIPT LOAD answer.
enum RESPReply: Sendable {
    case simple(String)
    case error(String)
    case integer(Int)
    case bulk(String?)

    var text: String? {
        switch self {
        case .simple(let text), .bulk(let text?): text
        default: nil
        }
    }

    /// One reply from the front of `buffer`, consumed; nil (nothing consumed) until it is whole.
    static func parse(_ buffer: inout ByteBuffer) -> RESPReply? {
        var reader = buffer
        guard let kind = reader.readInteger(as: UInt8.self), let line = reader.readLine() else { return nil }
        let reply: RESPReply
        switch kind {
        case UInt8(ascii: "+"): reply = .simple(line)
        case UInt8(ascii: "-"): reply = .error(line)
        case UInt8(ascii: ":"): reply = .integer(Int(line) ?? 0)
        case UInt8(ascii: "$"):
            guard let length = Int(line) else { return nil }
            if length < 0 {
                reply = .bulk(nil)
            } else {
                guard reader.readableBytes >= length + 2, let text = reader.readString(length: length) else { return nil }
                reader.moveReaderIndex(forwardBy: 2)
                reply = .bulk(text)
            }
        default: reply = .error("unexpected reply type \(kind)")
        }
        buffer = reader
        return reply
    }

    /// A command as RESP: an array of bulk strings.
    static func command(_ arguments: [String], into buffer: inout ByteBuffer) {
        buffer.writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            buffer.writeString("$\(argument.utf8.count)\r\n")
            buffer.writeString(argument)
            buffer.writeString("\r\n")
        }
    }
}

extension ByteBuffer {
    /// A line up to CRLF, consumed with it; nil until the CRLF has arrived.
    mutating func readLine() -> String? {
        guard let end = readableBytesView.firstIndex(of: UInt8(ascii: "\r")),
            end + 1 < readableBytesView.endIndex, readableBytesView[end + 1] == UInt8(ascii: "\n")
        else { return nil }
        let line = readString(length: end - readableBytesView.startIndex)
        moveReaderIndex(forwardBy: 2)
        return line
    }
}

/// A command on its way, with the promise its reply fulfils (replies come in the order sent).
struct RESPCall: Sendable {
    var bytes: ByteBuffer
    var reply: EventLoopPromise<RESPReply>
}

final class RESPHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RESPCall
    typealias OutboundOut = ByteBuffer

    private var waiting = CircularBuffer<EventLoopPromise<RESPReply>>()
    private var received: ByteBuffer?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let call = unwrapOutboundIn(data)
        waiting.append(call.reply)
        context.write(wrapOutboundOut(call.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if received == nil { received = incoming } else { received!.writeBuffer(&incoming) }
        while !waiting.isEmpty, let reply = RESPReply.parse(&received!) {
            waiting.removeFirst().succeed(reply)
        }
        if received?.readableBytes == 0 { received = nil }
    }

    func channelInactive(context: ChannelHandlerContext) {
        struct ConnectionClosed: Error {}
        while let promise = waiting.popFirst() { promise.fail(ConnectionClosed()) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        while let promise = waiting.popFirst() { promise.fail(error) }
        context.close(promise: nil)
    }
}

/// A few connections to Redis, each pipelined, taken in turn.
struct Redis: Sendable {
    let channels: [any Channel]
    private let next = Counter()

    static func connect(port: Int, connections: Int) async throws -> Redis {
        var channels: [any Channel] = []
        for _ in 0..<connections {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RESPHandler()) }
                }
                .connect(host: "127.0.0.1", port: port).get()
            channels.append(channel)
        }
        return Redis(channels: channels)
    }

    func call(_ arguments: [String]) async throws -> RESPReply {
        let channel = channels[next.take() % channels.count]
        var bytes = channel.allocator.buffer(capacity: 128)
        RESPReply.command(arguments, into: &bytes)
        let reply = channel.eventLoop.makePromise(of: RESPReply.self)
        channel.writeAndFlush(RESPCall(bytes: bytes, reply: reply), promise: nil)
        return try await reply.futureResult.get()
    }

    final class Counter: Sendable {
        private let value = Atomic<Int>(0)
        func take() -> Int { value.add(1, ordering: .relaxed).oldValue }
    }
}

struct IssueBody: Decodable {
    var user_id: String
}

func option(_ name: String, _ fallback: String? = nil) -> String {
    let arguments = CommandLine.arguments
    if let index = arguments.firstIndex(of: name), index + 1 < arguments.count { return arguments[index + 1] }
    guard let fallback else { fatalError("\(name) is required") }
    return fallback
}

let port = Int(option("--port", "8420"))!
let redis = try await Redis.connect(port: Int(option("--redis-port", "6390"))!, connections: Int(option("--connections", "4"))!)
guard let sha = try await redis.call(["SCRIPT", "LOAD", try String(contentsOfFile: option("--script"), encoding: .utf8)]).text else {
    fatalError("SCRIPT LOAD failed")
}

let router = Router()
router.get("/healthz") { _, _ -> HTTPResponse.Status in .ok }
router.post("/v1/coupons/:id/issue") { request, context -> Response in
    guard let id = context.parameters.get("id", as: Int64.self) else { throw HTTPError(.badRequest) }
    let body = try await request.body.collect(upTo: 1024)
    // Written into the answer as it is: nothing that JSON would have to escape.
    guard let user = try? JSONDecoder().decode(IssueBody.self, from: body).user_id, !user.isEmpty,
        user.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0 != "\"" && $0 != "\\" })
    else {
        throw HTTPError(.badRequest)
    }
    let reply = try await redis.call(["EVALSHA", sha, "2", "coupon:\(id):users", "coupon:\(id):left", user])
    let (status, outcome): (HTTPResponse.Status, String) =
        switch reply.text {
        case "issued": (.created, "issued")
        case "already": (.ok, "already_issued")
        case "sold_out": (.conflict, "sold_out")
        default: (.serviceUnavailable, "unavailable")
        }
    var answer = ByteBuffer()
    answer.writeString(#"{"coupon_id":\#(id),"user_id":"\#(user)","outcome":"\#(outcome)"}"#)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: answer))
}
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
try await app.runService()
