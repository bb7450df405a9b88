// SPDX-License-Identifier: Apache-2.0
// The translation unit that builds the precompiled header core/pch.h (target tessera_pch).
