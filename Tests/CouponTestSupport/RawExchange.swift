import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// Sends bytes as they are on a connection of their own and returns all the server answered until it
/// closed the connection, or nil when `timeout` passed first: for requests no HTTP client would send
/// (broken framing, impossible lengths).
package func rawExchange(port: Int, _ request: String, timeout: Duration = .seconds(10)) async throws -> String? {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
        }
    let raw = channel.channel
    return try await withThrowingTaskGroup(of: String?.self) { group in
        group.addTask {
            // What arrived before the connection ended, however it ended: a server that answers before
            // the body (413) and closes may fail the write or end the read with an error.
            (try? await channel.executeThenClose { inbound, outbound in
                try? await outbound.write(ByteBuffer(string: request))
                var answer = ""
                do {
                    for try await chunk in inbound { answer += String(buffer: chunk) }
                } catch {}
                return answer
            }) ?? ""
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

/// A connection of the test's own on a plain socket, kept open between requests (a keep-alive client
/// that goes idle, or sends a request now and then).
package final class KeptConnection: @unchecked Sendable {
    private let socket: Int32

    package init(port: Int) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard socket >= 0, connected == 0 else { throw KeptConnectionError(errno: errno) }
    }

    deinit { Glibc.close(socket) }

    /// Sends a request and returns what arrived within `timeout` (one read), or nil when nothing did
    /// or the server closed the connection.
    package func ask(_ request: String, timeout: Duration = .seconds(5)) -> String? {
        guard request.utf8CString.withUnsafeBufferPointer({ Glibc.send(socket, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) }) > 0 else {
            return nil
        }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = Glibc.recv(socket, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
    }
}

package struct KeptConnectionError: Error {
    package var errno: Int32
}
