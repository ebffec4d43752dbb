/* moedist: CANN-compatible HCCL API (communicator management). An HCCL communicator is a moedist in-process
 * communicator whose ranks are threads of this process; its name is the group name the aclnn operators take.
 * C and C++. */
#ifndef MOEDIST_HCCL_HCCL_H_
#define MOEDIST_HCCL_HCCL_H_

#include "acl/acl.h"
#include "hccl/hccl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One communicator of `ndev` ranks in this process: rank i runs on device devices[i] (distinct device ids), and
 * comms[i] receives rank i's handle. */
ACL_FUNC_VISIBILITY HcclResult HcclCommInitAll(uint32_t ndev, int32_t* devices, HcclComm* comms);

/* A fresh root info for HcclCommInitRootInfo. */
ACL_FUNC_VISIBILITY HcclResult HcclGetRootInfo(HcclRootInfo* rootInfo);
/* Rank `rank` of the communicator of `nRanks` ranks named by `rootInfo`; each rank calls it once (on any thread). */
ACL_FUNC_VISIBILITY HcclResult HcclCommInitRootInfo(uint32_t nRanks, const HcclRootInfo* rootInfo, uint32_t rank,
                                                    HcclComm* comm);

/* Copies the communicator's name (unique in the process, shorter than 128 chars) into `commName`, which must hold
 * 128 chars. */
ACL_FUNC_VISIBILITY HcclResult HcclGetCommName(HcclComm comm, char* commName);
ACL_FUNC_VISIBILITY HcclResult HcclGetRankSize(HcclComm comm, uint32_t* rankSize);
ACL_FUNC_VISIBILITY HcclResult HcclGetRankId(HcclComm comm, uint32_t* rank);

/* Destroys this rank's handle. The communicator lives on until the handles of all its ranks are destroyed, so
 * ranks may destroy their handles at different times. */
ACL_FUNC_VISIBILITY HcclResult HcclCommDestroy(HcclComm comm);

#ifdef __cplusplus
}
#endif

#endif /* MOEDIST_HCCL_HCCL_H_ */
