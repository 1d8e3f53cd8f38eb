// The Instagram Messaging plugin (libchorus-instagram.so).
//
// Instagram Messaging is the Messenger Platform's messaging API on an Instagram
// professional account: the same webhook shape (`entry[].messaging[]`), the
// same Send API, the same signing. The connector is MetaMessaging's
// `MessagingConnector`, parameterized by channel; this target only exports
// the entry point that creates it for `instagram`. See docs/connectors/instagram.md.
import CChorusPlugin
import ChorusConnectorSDK
import MetaMessaging

/// The Instagram plugin's one exported symbol.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: MessagingConnector.descriptor(for: .instagram)) { host, settings in
        try MessagingConnector(channel: .instagram, host: host, settings: settings)
    }
}
