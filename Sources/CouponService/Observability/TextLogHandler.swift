import Logging

/// swift-log's text lines, formatted only when a line is written.
///
/// `StreamLogHandler` formats its metadata again whenever it changes, and Hummingbird sets a request
/// id on every request's logger: at the default level that was a string built and thrown away on
/// every request. This keeps the metadata as it is and hands it to a `StreamLogHandler` per line.
public struct TextLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var stream = StreamLogHandler.standardOutput(label: label, metadataProvider: metadataProvider)
        stream.logLevel = logLevel
        stream.metadata = metadata
        stream.log(event: event)
    }
}
