import Foundation
import Logging
import NIOCore
import Synchronization

/// One JSON object per line on standard output, for log shippers:
/// `{"time":"…","level":"info","label":"coupon-server","message":"…","metadata":{…}}`.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.init(label: label, metadataProvider: metadataProvider) { line in
            standardOutput.withLock { _ in
                FileHandle.standardOutput.write(Data(line.utf8))
            }
        }
    }

    /// `write` receives each line, newline included.
    init(label: String, metadataProvider: Logger.MetadataProvider? = nil, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        var line = #"{"time":"\#(RFC3339.string(Date()))","level":"\#(event.level.rawValue)","label":"#
        line += Self.quoted(label) + #","message":"# + Self.quoted(event.message.description)
        if !merged.isEmpty {
            line += #","metadata":"# + Self.json(.dictionary(merged))
        }
        write(line + "}\n")
    }

    static func json(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let string): quoted(string)
        case .stringConvertible(let convertible): quoted(convertible.description)
        case .array(let values): "[" + values.map(json).joined(separator: ",") + "]"
        case .dictionary(let entries):
            "{" + entries.sorted { $0.key < $1.key }.map { quoted($0.key) + ":" + json($0.value) }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string literal, as the answers write them.
    static func quoted(_ string: String) -> String {
        var buffer = ByteBuffer()
        buffer.writeJSONString(string)
        return String(buffer: buffer)
    }
}

/// Lines from several threads must not interleave.
private let standardOutput = Mutex(())
