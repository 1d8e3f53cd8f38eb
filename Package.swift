// swift-tools-version:6.0
//
// Chorus — a chat gateway daemon. See README.md.
import PackageDescription

let package = Package(
    name: "chorus",
    products: [
        .executable(name: "chorusd", targets: ["chorusd"]),
        .executable(name: "chorusctl", targets: ["chorusctl"]),
        .executable(name: "chorus-bench", targets: ["chorus-bench"]),
        .executable(name: "chorus-conformance", targets: ["chorus-conformance"]),
        .library(name: "ChorusConnectorSDK", targets: ["ChorusConnectorSDK"]),
        .library(name: "ChorusClient", targets: ["ChorusClient"]),
        .library(name: "ChorusConformance", targets: ["ChorusConformance"]),
        // Connector plugins: one dynamic library each, loaded by chorusd with dlopen.
        .library(name: "chorus-sandbox", type: .dynamic, targets: ["SandboxConnector"]),
        .library(name: "chorus-whatsapp", type: .dynamic, targets: ["WhatsAppConnector"]),
        .library(name: "chorus-messenger", type: .dynamic, targets: ["MessengerConnector"]),
        .library(name: "chorus-instagram", type: .dynamic, targets: ["InstagramConnector"]),
        .library(name: "chorus-telegram", type: .dynamic, targets: ["TelegramConnector"]),
        .library(name: "chorus-slack", type: .dynamic, targets: ["SlackConnector"]),
        .library(name: "chorus-sms", type: .dynamic, targets: ["SMSConnector"]),
        .library(name: "chorus-teams", type: .dynamic, targets: ["TeamsConnector"]),
        .library(name: "chorus-email", type: .dynamic, targets: ["EmailConnector"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // MARK: C libraries (Debian -dev packages) and their shims
        .systemLibrary(name: "CLibUV", path: "Sources/CLibUV", pkgConfig: "libuv",
                       providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-gnutls-dev"])]),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CHTTPParser", path: "Sources/CHTTPParser",
                       providers: [.apt(["libhttp-parser-dev"])]),
        .systemLibrary(name: "CSystemd", path: "Sources/CSystemd", pkgConfig: "libsystemd",
                       providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CGMime", path: "Sources/CGMime", pkgConfig: "gmime-3.0",
                       providers: [.apt(["libgmime-3.0-dev"])]),
        // No pkgConfig: libetpan.pc lists every library libetpan itself links (Berkeley DB, SASL, lockfile) and a
        // dpkg specs file; the module map links libetpan and GnuTLS, the two the shim calls.
        .systemLibrary(name: "CEtPan", path: "Sources/CEtPan", providers: [.apt(["libetpan-dev"])]),

        // MARK: The plugin ABI (the installed header chorus_plugin.h)
        .target(name: "CChorusPlugin", path: "Sources/CChorusPlugin"),

        // MARK: Pure modules (no I/O)
        .target(name: "ChorusJSON", path: "Sources/ChorusJSON", linkerSettings: [.linkedLibrary("m")]),
        .target(name: "ChorusModel", dependencies: ["ChorusJSON", "COpenSSL"], path: "Sources/ChorusModel"),
        .target(name: "ChorusProtocol", dependencies: ["ChorusJSON", "ChorusModel"], path: "Sources/ChorusProtocol"),
        .target(name: "ChorusConfig", dependencies: ["TOMLKit"], path: "Sources/ChorusConfig"),

        // MARK: I/O modules
        .target(name: "ChorusLoop",
                dependencies: ["CLibUV", "CCurl", "CHTTPParser", .product(name: "Logging", package: "swift-log")],
                path: "Sources/ChorusLoop"),
        .target(name: "ChorusStore", dependencies: ["CSQLite", "ChorusJSON", "ChorusModel"], path: "Sources/ChorusStore"),
        .target(name: "ChorusPluginHost",
                dependencies: ["CChorusPlugin", "ChorusJSON", "ChorusLoop", "ChorusToolchain",
                               .product(name: "Logging", package: "swift-log")],
                path: "Sources/ChorusPluginHost"),
        .target(name: "ChorusDaemon",
                dependencies: ["ChorusJSON", "ChorusModel", "ChorusProtocol", "ChorusConfig", "ChorusLoop",
                               "ChorusStore", "ChorusPluginHost", "CSystemd", "CLibUV",
                               .product(name: "Logging", package: "swift-log")],
                path: "Sources/ChorusDaemon"),
        .target(name: "ChorusClient", dependencies: ["ChorusJSON", "ChorusProtocol"], path: "Sources/ChorusClient"),

        // MARK: Swift connector SDK (linked into each Swift plugin)
        .target(name: "ChorusToolchain", path: "Sources/ChorusToolchain"),
        .target(name: "ChorusConnectorSDK", dependencies: ["CChorusPlugin", "ChorusJSON", "ChorusToolchain"],
                path: "Sources/ChorusConnectorSDK"),
        .target(name: "ChorusConformance",
                dependencies: ["CChorusPlugin", "ChorusJSON", "ChorusPluginHost", "ChorusLoop", "ChorusToolchain",
                               .product(name: "Logging", package: "swift-log")],
                path: "Sources/ChorusConformance"),

        // MARK: Executables (argument parsing only)
        // jemalloc (Debian libjemalloc-dev) replaces glibc's malloc in chorusd and the plugins it loads: allocation
        // was the largest cost in profiles; it cuts chorusd's CPU per message by about 30% (docs/operations.md).
        .executableTarget(name: "chorusd",
                          dependencies: ["ChorusDaemon", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/chorusd",
                          linkerSettings: [.linkedLibrary("jemalloc")]),
        .executableTarget(name: "chorusctl",
                          dependencies: ["ChorusClient", "ChorusJSON", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/chorusctl"),
        .executableTarget(name: "chorus-bench",
                          dependencies: ["ChorusClient", "ChorusJSON", "ChorusProtocol", "ChorusStore", "ChorusTestKit",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/chorus-bench"),
        .executableTarget(name: "chorus-conformance",
                          dependencies: ["ChorusConformance", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/chorus-conformance"),

        // MARK: Connector plugins
        .target(name: "SandboxConnector", dependencies: ["ChorusConnectorSDK", "ChorusJSON"], path: "Plugins/sandbox"),
        // Meta (WhatsApp Cloud API, Messenger, Instagram): shared Graph webhook, signature and API client code.
        .target(name: "MetaGraph", dependencies: ["ChorusConnectorSDK", "ChorusJSON", "ChorusModel", "COpenSSL"], path: "Plugins/meta/Common"),
        .target(name: "WhatsAppConnector", dependencies: ["MetaGraph", "ChorusConnectorSDK", "ChorusJSON"], path: "Plugins/meta/WhatsApp"),
        // Messenger and Instagram share one messaging connector (same webhook shape and Send API); each plugin is its entry point.
        .target(name: "MetaMessaging", dependencies: ["MetaGraph", "ChorusConnectorSDK", "ChorusJSON"], path: "Plugins/meta/Messaging"),
        .target(name: "MessengerConnector", dependencies: ["MetaMessaging", "ChorusConnectorSDK", "CChorusPlugin"], path: "Plugins/meta/Messenger"),
        .target(name: "InstagramConnector", dependencies: ["MetaMessaging", "ChorusConnectorSDK", "CChorusPlugin"], path: "Plugins/meta/Instagram"),
        .target(name: "TelegramConnector", dependencies: ["ChorusConnectorSDK", "ChorusJSON", "ChorusModel", "COpenSSL"], path: "Plugins/telegram"),
        .target(name: "SlackConnector", dependencies: ["ChorusConnectorSDK", "ChorusJSON", "COpenSSL"], path: "Plugins/slack"),
        .target(name: "SMSConnector", dependencies: ["ChorusConnectorSDK", "ChorusJSON", "COpenSSL"], path: "Plugins/sms"),
        .target(name: "TeamsConnector", dependencies: ["ChorusConnectorSDK", "ChorusJSON", "COpenSSL"], path: "Plugins/teams"),
        // Email: MIME through GMime (no I/O), IMAP/SMTP/LMTP transports, and the connector that joins them.
        .target(name: "EmailMIME", dependencies: ["CGMime"], path: "Plugins/email/MIME"),
        .target(name: "EmailTransport", dependencies: ["CEtPan", "CCurl"], path: "Plugins/email/Transport"),
        .target(name: "EmailConnector",
                dependencies: ["EmailMIME", "EmailTransport", "ChorusConnectorSDK", "ChorusJSON", "ChorusModel", "COpenSSL"],
                path: "Plugins/email/Connector"),

        // MARK: Tests
        .target(name: "ChorusTestKit", dependencies: ["ChorusClient", "ChorusJSON", "ChorusProtocol"], path: "Sources/ChorusTestKit"),
        .testTarget(name: "ChorusJSONTests", dependencies: ["ChorusJSON"], path: "Tests/ChorusJSONTests"),
        .testTarget(name: "ChorusModelTests", dependencies: ["ChorusModel", "ChorusJSON", "ChorusTestKit"], path: "Tests/ChorusModelTests"),
        .testTarget(name: "ChorusProtocolTests", dependencies: ["ChorusProtocol", "ChorusJSON", "ChorusClient"], path: "Tests/ChorusProtocolTests"),
        .testTarget(name: "ChorusConfigTests", dependencies: ["ChorusConfig"], path: "Tests/ChorusConfigTests"),
        .testTarget(name: "ChorusLoopTests", dependencies: ["ChorusLoop", "CLibUV"], path: "Tests/ChorusLoopTests"),
        .testTarget(name: "ChorusStoreTests", dependencies: ["ChorusStore", "ChorusModel", "ChorusJSON"], path: "Tests/ChorusStoreTests"),
        .testTarget(name: "ChorusPluginHostTests", dependencies: ["ChorusPluginHost", "ChorusLoop", "ChorusTestKit", "ChorusConformance"], path: "Tests/ChorusPluginHostTests"),
        .testTarget(name: "MetaConnectorTests", dependencies: ["MetaGraph", "ChorusTestKit", "ChorusClient", "ChorusJSON", "ChorusProtocol", "ChorusConformance"], path: "Tests/MetaConnectorTests"),
        .testTarget(name: "TelegramConnectorTests", dependencies: ["ChorusTestKit", "ChorusClient", "ChorusJSON", "ChorusProtocol", "ChorusConformance"], path: "Tests/TelegramConnectorTests"),
        .testTarget(name: "SlackConnectorTests", dependencies: ["ChorusTestKit", "ChorusClient", "ChorusJSON", "ChorusProtocol", "ChorusConformance"], path: "Tests/SlackConnectorTests"),
        .testTarget(name: "SMSConnectorTests", dependencies: ["ChorusTestKit", "ChorusClient", "ChorusJSON", "ChorusProtocol", "ChorusConformance"], path: "Tests/SMSConnectorTests"),
        .testTarget(name: "TeamsConnectorTests", dependencies: ["ChorusTestKit", "ChorusClient", "ChorusJSON", "ChorusProtocol", "ChorusConformance"], path: "Tests/TeamsConnectorTests"),
        .testTarget(name: "EmailMIMETests", dependencies: ["EmailMIME", "ChorusTestKit"], path: "Tests/EmailMIMETests"),
        .testTarget(name: "EmailTransportTests", dependencies: ["EmailTransport", "ChorusTestKit"], path: "Tests/EmailTransportTests"),
        .testTarget(name: "EmailConnectorTests", dependencies: ["ChorusTestKit", "ChorusClient", "ChorusJSON", "ChorusProtocol", "ChorusConformance"], path: "Tests/EmailConnectorTests"),
        .testTarget(name: "ChorusIntegrationTests", dependencies: ["ChorusTestKit", "ChorusClient", "ChorusJSON", "ChorusProtocol"], path: "Tests/ChorusIntegrationTests"),
    ],
    swiftLanguageModes: [.v6]
)
