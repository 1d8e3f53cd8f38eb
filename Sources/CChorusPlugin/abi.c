/* CChorusPlugin holds the public header chorus_plugin.h; this file checks at
 * compile time that the layout promises of ABI v1 hold on this platform. */
#include "chorus_plugin.h"
_Static_assert(offsetof(chorus_host_api, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(chorus_plugin_descriptor, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(chorus_plugin_vtable, struct_size) == 0, "struct_size first");
_Static_assert(sizeof(chorus_send_result) == 72, "chorus_send_result v1 layout");
_Static_assert(sizeof(chorus_capabilities) == 104, "chorus_capabilities v1 layout");
_Static_assert(sizeof(chorus_host_api) == 280, "chorus_host_api v1 layout");
_Static_assert(sizeof(chorus_plugin_vtable) == 120, "chorus_plugin_vtable v1 layout");
_Static_assert(sizeof(chorus_plugin_descriptor) == 128, "chorus_plugin_descriptor v1 layout");
