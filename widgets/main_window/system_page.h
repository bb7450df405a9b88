// SPDX-License-Identifier: Apache-2.0
// The System page moved to widgets/system/ (a panel of widgets/panels.def); this name
// stays for code that includes it from here.
#pragma once

#include "widgets/system/system_page.h"
