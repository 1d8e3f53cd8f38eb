/*
 * no_entry.c — negative fixture: a shared object that does not export
 * chorus_plugin_entry (only a similarly named symbol). The host must refuse it
 * with PluginLoadError.missingSymbol naming the file and the symbol.
 */
#include "chorus_plugin.h"

CHORUS_EXPORT int chorus_plugin_entry_missing(void) { return 42; }
