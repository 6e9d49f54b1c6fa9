/* Keeps the ABI userspace checks in the object's BTF (test/unit/abi.test.ts): BTF only holds types
 * that something declared uses, and no map carries struct eg_event or any of these enums. */
#ifndef EG_LIB_ABI_H
#define EG_LIB_ABI_H

#include "common.h"

/* One member per enum shared with src/datapath/abi.ts: the values, not only the names, are checked. */
struct eg_abi_enums {
	enum eg_abi abi;
	enum eg_action action;
	enum eg_verdict verdict;
	enum eg_tier tier;
	enum eg_layer layer;
	enum eg_reason reason;
	enum eg_hook hook;
	enum eg_rule_flag rule_flag;
	enum eg_stat stat;
	enum eg_config_flag config_flag;
	enum eg_workload_flag workload_flag;
	enum eg_closing closing;
	enum eg_approval_kind approval_kind;
	enum eg_event_kind event_kind;
	enum eg_evidence evidence;
};

/* Never called or loaded (an unreferenced global function stays out of every program): its
 * signature is what keeps the types in BTF. */
__attribute__((noinline, used)) int eg_abi_anchor(struct eg_event *event, struct eg_abi_enums *enums)
{
	return event != 0 && enums != 0;
}

#endif
