import Crypto
import Foundation

/// One file of the migrations folder: versioned, `NNNN_name.sql`, applied once in version order; or
/// repeatable, `functions/name.sql` (a function and what it needs: its trigger, its distribution),
/// applied after the versioned ones whenever its text changes, as Flyway's repeatable migrations.
/// So `git log -p migrations/functions/issue_tickets.sql` is that function's history.
public struct Migration: Sendable, Equatable {
    /// Nil for a repeatable migration.
    public var version: Int?
    public var name: String
    public var sql: String
    /// SHA-256 of the file, hex: an applied versioned migration whose file changes is refused; a
    /// repeatable one whose file changes is applied again.
    public var checksum: String

    /// The file's path in the folder: `NNNN_name.sql` or `functions/name.sql`.
    public var fileName: String {
        guard let version else { return "\(Self.functionsFolder)/\(name).sql" }
        return String(format: "%04d", version) + "_\(name).sql"
    }

    /// False for a file whose leading comments hold the line `-- migrate: no-transaction`: its
    /// statements each commit on their own (`CREATE INDEX CONCURRENTLY` refuses a transaction), and the
    /// file is written to be run again if it stops halfway (`IF NOT EXISTS`). docs/operations.md.
    public var runsInTransaction: Bool {
        !sql.split(separator: "\n").prefix { $0.hasPrefix("--") }.contains { $0.trimmingCharacters(in: .whitespaces) == Self.noTransaction }
    }

    static let noTransaction = "-- migrate: no-transaction"

    /// The index a statement builds with `CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS name`, if it
    /// is one: the runner skips it when the index is there and valid, and drops it first when a failed
    /// build left it invalid (`IF NOT EXISTS` would keep it).
    static func concurrentIndex(builtBy statement: String) -> String? {
        statement.firstMatch(of: #/(?im)^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(\w+)/#).map { String($0.1) }
    }

    /// `0001 coupons`, or `functions/issue_tickets`, as the command prints it.
    public var label: String { Self.label(version: version, name: name) }

    static func label(version: Int?, name: String) -> String {
        guard let version else { return "\(functionsFolder)/\(name)" }
        return String(format: "%04d", version) + " \(name)"
    }

    static let functionsFolder = "functions"

    public init(version: Int?, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
        self.checksum = SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Checksums versioned files had before they were rewritten, as databases migrated until then
    /// recorded them. Such a record stands for its version's file as it is now and is kept as it is (the
    /// database's history); a version whose file is gone is retired, its record no longer listed.
    /// - 1 to 9: before their functions moved to `functions/` (2026-12-04); 2, 4, 5, 8 and 9 held
    ///   only functions and are gone.
    /// - 10: its five changes in one `ALTER TABLE`, which Citus refuses (2026-12-07); the same schema.
    /// - 12: with the index of 0013 built in its transaction, holding coupon_tickets' write lock for the
    ///   build (2026-12-07); the same schema.
    static let formerChecksums: [Int: Set<String>] = [
        1: ["0f628e7422f645080044549d8456dfe42e716853d2536fcd83fe5d2e2125cab7"],
        2: ["63a8fd3d37b5c70d218689c409419fecb338c2f1411ccb5eda101aba682e62de"],
        3: ["6628b87145fd8901ab02625587df6f64677aca1ed498a37552c298e1f74e4688"],
        4: ["19aa9f59ebf55afdc5eec1775835d8527607fba3640cd4dc5997fc295da9da05"],
        5: ["779e0f5c65074ef5fba85d84b0fa830f26250492b9b19d50242d9d9d761d6c4e"],
        6: ["b3dc10739f1568c177bc1dee1ca7f135b411d2c3e0559ff34af756aa145a6e89"],
        7: ["1e65d6cc062969eef96469265584e8f1f3a722b1cf2f276161f02801e5ce5e6f"],
        8: ["a260d0b17deb1ae186c107d5982ca587c4f27d43b5f003f3e905a9eaf79a6f93"],
        9: ["31c681873fa7e50092546932e306c0960e57dd451d65c6271e4ebfce80c51349"],
        10: ["e2141a502d8c9e4eed77da8c21baacbe8655baead8dd2953c88ec39bebd87983"],
        12: ["0594d4cf2465c939d3ba8bd8b30ae9aa76b0f5a8df664ba35a40654b1c0f4e6d"],
    ]

    /// Whether a checksum recorded for `version` is one its file had before it was rewritten.
    static func isFormerChecksum(_ checksum: String, ofVersion version: Int) -> Bool {
        formerChecksums[version]?.contains(checksum) ?? false
    }

    /// The migrations this binary was built with (migrations/, by the EmbeddedMigrations plugin):
    /// what `coupon-server migrate` applies unless `--migrations` names a folder.
    public static func embedded() throws -> [Migration] { try parse(embeddedFiles) }

    /// Loads every `NNNN_name.sql` of a folder, then every `functions/name.sql` (when that folder exists).
    public static func load(from directory: URL) throws -> [Migration] {
        let functions = directory.appending(path: functionsFolder, directoryHint: .isDirectory)
        var files: [(path: String, sql: String)] = []
        for (folder, prefix) in [(directory, ""), (functions, "\(functionsFolder)/")] {
            if folder == functions, !FileManager.default.fileExists(atPath: functions.path) { continue }
            for name in try sqlFiles(in: folder) {
                files.append((prefix + name, try String(contentsOf: folder.appending(path: name), encoding: .utf8)))
            }
        }
        return try parse(files)
    }

    /// The migrations of a folder's files, each named by its path there: the versioned ones in version
    /// order, then the repeatable ones (`functions/`) by name.
    static func parse(_ files: [(path: String, sql: String)]) throws -> [Migration] {
        var migrations: [Migration] = []
        var repeatable: [Migration] = []
        for (path, sql) in files {
            if path.hasPrefix("\(functionsFolder)/") {
                repeatable.append(Migration(version: nil, name: String(path.dropFirst(functionsFolder.count + 1).dropLast(4)), sql: sql))
                continue
            }
            let stem = path.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]), version > 0 else {
                throw MigrationError.badFileName(path)
            }
            migrations.append(Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql))
        }
        repeatable.sort { $0.name < $1.name }
        migrations.sort { $0.version! < $1.version! }
        for (a, b) in zip(migrations, migrations.dropFirst()) where a.version == b.version {
            throw MigrationError.duplicateVersion(a.version!)
        }
        return migrations + repeatable
    }

    private static func sqlFiles(in directory: URL) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }
        } catch {
            throw MigrationError.folderUnreadable(directory.path)
        }
    }
}

public enum MigrationError: Error, CustomStringConvertible, Equatable {
    case folderUnreadable(String)
    case badFileName(String)
    case duplicateVersion(Int)
    case checksumChanged(version: Int, name: String, applied: String, file: String)
    case statementFailed(file: String, statement: Int, of: Int, message: String, sqlState: String?, sql: String)
    case databaseIsNewer(String, known: Int)

    public var description: String {
        switch self {
        case .statementFailed(let file, let statement, let count, let message, let sqlState, let sql):
            "\(file), statement \(statement) of \(count): \(message)\(sqlState.map { " (SQLSTATE \($0))" } ?? "")\n"
                + sql.split(separator: "\n").prefix(3).map { "    " + $0 }.joined(separator: "\n")
        case .databaseIsNewer(let label, let known):
            """
            the database has migration \(label), newer than this release's (up to \(String(format: "%04d", known))): \
            run migrate with the release that has it (an older one would put its older functions back)
            """
        case .folderUnreadable(let path):
            "cannot read the migrations folder '\(path)' (set --migrations)"
        case .badFileName(let file):
            "migration file '\(file)' is not named NNNN_name.sql"
        case .duplicateVersion(let version):
            "two migration files have version \(version)"
        case .checksumChanged(let version, let name, let applied, let file):
            """
            migration \(version) (\(name)) was applied with checksum \(applied.prefix(12)) but its file now has \
            \(file.prefix(12)); applied migrations must not change: revert the file and add a new migration instead
            """
        }
    }
}
