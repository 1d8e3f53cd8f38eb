import CChorusPlugin
import ChorusConnectorSDK
import MetaMessaging

/// The Messenger plugin's one exported symbol (libchorus-messenger.so). The
/// connector itself lives in MetaMessaging, shared with the Instagram plugin.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: MessagingConnector.descriptor(for: .messenger)) { host, settings in
        try MessagingConnector(channel: .messenger, host: host, settings: settings)
    }
}
