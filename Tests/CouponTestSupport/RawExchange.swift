import Foundation
import NIOCore
import NIOPosix

/// Sends bytes as they are on a connection of their own and returns all the server answered until it
/// closed the connection, or nil when `timeout` passed first: for requests no HTTP client would send
/// (broken framing, impossible lengths).
package func rawExchange(port: Int, _ request: String, timeout: Duration = .seconds(5)) async throws -> String? {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
        }
    let raw = channel.channel
    return try await withThrowingTaskGroup(of: String?.self) { group in
        group.addTask {
            try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: request))
                var answer = ""
                for try await chunk in inbound { answer += String(buffer: chunk) }
                return answer
            }
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next() ?? nil
        raw.close(promise: nil)
        group.cancelAll()
        while (try? await group.next()) != nil {}
        return first
    }
}

/// Text in UTF-16, little-endian, after a byte order mark: how the red team sent JSON that the old
/// key check read wrong.
package func utf16WithByteOrderMark(_ text: some StringProtocol) -> Data {
    Data([0xFF, 0xFE]) + Data(text.utf16.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)] })
}

/// A port on 127.0.0.1 that nothing listened on a moment ago (for a second listener, such as the
/// metrics port, that a test must name before it starts).
package func freePort() async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress?.port ?? 0
    try await channel.close()
    return port
}
